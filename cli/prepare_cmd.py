"""prepare / sync-estimate: from unsynchronised videos to a dataset, and coarse offsets."""
from __future__ import annotations

import sys

import click

from taichi_syncnerf.cli.common import user_errors
from taichi_syncnerf.cli.data_cmds import _warnings_as_lines


def _offsets(values) -> str:
    shown = ", ".join(f"{v:+.2f}" for v in values[:12])
    return f"[{shown}{', ...' if len(values) > 12 else ''}]"


@click.command("prepare")
@click.argument("videos_dir", type=click.Path(file_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--frames", type=int, default=None,
              help="Keep at most N frames per camera (default: the whole common overlap).")
@click.option("--size", default=None, metavar="WxH",
              help="Frame size of the dataset (default: the most common input size).")
@click.option("--fps", type=float, default=None,
              help="Frame rate of the dataset (default: the most common input rate).")
@click.option("--sync", "sync_method", type=click.Choice(["auto", "audio", "visual", "none"]),
              default="auto", show_default=True,
              help="Coarse offsets from the sound tracks (auto: when every video has one), from "
                   "the videos' motion, or none.")
@click.option("--max-offset", type=float, default=None, metavar="SECONDS",
              help="Largest offset searched (default: the shortest video less 20 %%).")
@click.option("--sfm-frames", type=int, default=3, show_default=True,
              help="Frames per camera given to structure from motion.")
@click.option("--intrinsics", type=click.Choice(["auto", "shared", "per-camera"]), default="auto",
              show_default=True,
              help="One focal length for all cameras, or one per camera (auto: shared when every "
                   "video has the same size).")
@click.option("--fov", type=float, default=None, metavar="DEGREES",
              help="Horizontal field of view of the lenses, if known: the focal length is fixed "
                   "to it (the reliable choice for a small forward-facing rig).")
@click.option("--threads", type=click.IntRange(1, 1024), default=2, show_default=True,
              help="CPU threads for structure from motion.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the SfM.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@user_errors
def prepare_cmd(videos_dir, out, frames, size, fps, sync_method, max_offset, sfm_frames,
                intrinsics, fov, threads, seed, force, quiet):
    """Turn a folder of unsynchronised videos (any names, mp4/mov, with or without sound) into a
    dataset in OUT: camera poses by structure from motion (pycolmap), coarse offsets, videos
    trimmed to their common overlap (poses_bounds.npy, camXX.mp4, offsets_init.json,
    prepare.json)."""
    from taichi_syncnerf.capture.prepare import prepare

    with _warnings_as_lines():
        doc = prepare(videos_dir, out, frames=frames, size=size, fps=fps, sync_method=sync_method,
                      sfm_frames=sfm_frames, intrinsics=intrinsics, fov=fov,
                      max_offset_s=max_offset, threads=threads, seed=seed, overwrite=force,
                      progress=not quiet and sys.stderr.isatty())
    reg = [i for i in doc["inputs"] if i["registered"]]
    click.echo(f"wrote {out}: {len(reg)} of {len(doc['inputs'])} cameras, {doc['frames']} frames, "
               f"{doc['width']}x{doc['height']} at {doc['fps']:g} fps")
    for i in reg:
        click.echo(f"  {i['camera']} <- {i['file']} (from frame {i['start_frame']}, "
                   f"{i['points']} points, {i['reprojection_error_px']:.2f} px)")
    est = [i["offset_estimate_frames"] for i in reg]
    click.echo(f"offsets ({doc['sync']['method']}, frames, relative to {reg[0]['file']}): "
               f"{_offsets(est)} -> offsets_init.json")


@click.command("sync-estimate")
@click.argument("data", type=click.Path(file_okay=False))
@click.option("--sync", "sync_method", type=click.Choice(["auto", "audio", "visual"]),
              default="auto", show_default=True,
              help="From the sound tracks (auto: when every video has one) or the videos' motion.")
@click.option("--max-offset", type=float, default=None, metavar="SECONDS",
              help="Largest offset searched (default: the shortest video less 20 %%).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@user_errors
def sync_estimate_cmd(data, sync_method, max_offset, quiet):
    """Estimate every camera's offset in the dataset DATA and write DATA/offsets_init.json
    (train starts from it when offsets.init_from_dataset is true)."""
    from taichi_syncnerf.capture.dataset_sync import estimate_dataset_offsets

    with _warnings_as_lines():
        doc = estimate_dataset_offsets(data, sync_method, max_offset,
                                       progress=not quiet and sys.stderr.isatty())
    click.echo(f"offsets ({doc['method']}, frames, relative to {doc['reference']}): "
               f"{_offsets(doc['offsets_frames'])} -> offsets_init.json")


COMMANDS = [prepare_cmd, sync_estimate_cmd]
