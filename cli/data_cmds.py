"""make-scene / desync / inspect: commands that create or read datasets."""
from __future__ import annotations

import re
import warnings
from contextlib import contextmanager

import click

from taichi_syncnerf.cli.common import user_errors
from taichi_syncnerf.errors import UserError


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text or "")
    if not m:
        raise UserError(f"--size must look like WIDTHxHEIGHT (e.g. 128x96), got {text!r}")
    return int(m.group(1)), int(m.group(2))


@contextmanager
def _warnings_as_lines():
    """Print library warnings as one ``warning: ...`` line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                click.echo(f"warning: {w.message}", err=True)


def _offsets_line(offsets) -> str:
    shown = ", ".join(f"{v:+.2f}" for v in offsets[:12])
    return f"[{shown}{', ...' if len(offsets) > 12 else ''}]"


@click.command("make-scene")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--layout", type=click.Choice(["n3dv", "blender"]), default="n3dv",
              show_default=True, help="On-disk layout (and camera rig) to write.")
@click.option("--family", type=click.Choice(["default", "static", "busy"]), default="default", show_default=True,
              help="Scene family: default (four movers, smooth room), static (a large high-frequency "
                   "textured wall and floor, two small movers), busy (eight larger movers).")
@click.option("--encoding", type=click.Choice(["default", "clean", "noisy"]), default="default",
              show_default=True, help="Video encoding: default (crf 12), clean (crf 1, near lossless), "
                                      "noisy (sensor noise 0.03, crf 14).")
@click.option("--cameras", type=int, default=9, show_default=True, help="Number of cameras.")
@click.option("--frames", type=int, default=60, show_default=True, help="Frames per video.")
@click.option("--size", "size", default="128x96", show_default=True, help="WIDTHxHEIGHT.")
@click.option("--fps", type=float, default=30.0, show_default=True, help="Frame rate.")
@click.option("--offset-sigma", type=float, default=3.0, show_default=True,
              help="Std. dev. of the per-camera time offsets, in frames (0: synchronised).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the offsets.")
@click.option("--png", is_flag=True, help="Also write RGBA PNGs under frames_1/ (blender only).")
@click.option("--force", is_flag=True, help="Replace OUT if it is an existing dataset.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@user_errors
def make_scene_cmd(out, layout, family, encoding, cameras, frames, size, fps, offset_sigma, seed, png, force,
                   quiet):
    """Render a synthetic dynamic scene with known per-camera time offsets into OUT."""
    from taichi_syncnerf.data.synthetic import make_scene

    w, h = _size(size)
    with _warnings_as_lines():
        gt = make_scene(out, layout=layout, cameras=cameras, frames=frames, size=(w, h), fps=fps,
                        offset_sigma=offset_sigma, seed=seed, progress=not quiet, png=png,
                        overwrite=force, family=family, encoding=encoding)
    click.echo(f"wrote {gt['path']}: {layout} layout, {family} scene, {encoding} encoding, "
               f"{gt['cameras']} cameras x {gt['frames']} "
               f"frames, {w}x{h} at {gt['fps']:g} fps")
    click.echo(f"offsets (frames, camera order): {_offsets_line(gt['offsets_frames'])}"
               f"  -> offsets_gt.json")


@click.command("desync")
@click.argument("src", type=click.Path(file_okay=False))
@click.argument("dst", type=click.Path(file_okay=False))
@click.option("--sigma", type=float, default=5.0, show_default=True,
              help="Std. dev. of the integer offsets, in frames.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the offsets.")
@click.option("--keep", type=int, default=None,
              help="Keep only the first N frames of the overlap (default: all of it).")
@click.option("--force", is_flag=True, help="Replace DST if it is an existing dataset.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@user_errors
def desync_cmd(src, dst, sigma, seed, keep, force, quiet):
    """Shift each video of the synchronised capture SRC by a random whole number of frames,
    keep the overlapping frames, and write the result to DST with offsets_gt.json."""
    from taichi_syncnerf.data.desync import desync

    with _warnings_as_lines():
        gt = desync(src, dst, sigma=sigma, seed=seed, keep=keep, progress=not quiet,
                    overwrite=force)
    click.echo(f"wrote {gt['path']}: {gt['layout']} layout, {gt['cameras']} cameras x "
               f"{gt['frames']} frames (of {gt['source_frames']})")
    click.echo(f"offsets (frames, camera order): {_offsets_line(gt['offsets_frames'])}"
               f"  -> offsets_gt.json")


def _inspect_command():
    """The ``inspect`` command, once taichi_syncnerf/cli/inspect_cmd.py exists."""
    try:
        from taichi_syncnerf.cli.inspect_cmd import inspect
    except ImportError as e:
        if getattr(e, "name", None) != "taichi_syncnerf.cli.inspect_cmd":
            raise
        return None
    return inspect


COMMANDS = [c for c in (make_scene_cmd, desync_cmd, _inspect_command()) if c is not None]
