"""``taichi-syncnerf inspect DATA``: load a dataset and print what was found."""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import click

from taichi_syncnerf.cli.common import user_errors


def _size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024.0
    return f"{nbytes:.1f} TiB"  # pragma: no cover


def _describe(info: dict) -> list[str]:
    cams = info["cameras"]
    shown = ", ".join(cams) if len(cams) <= 8 else f"{', '.join(cams[:4])}, ..., {cams[-1]}"
    near_far = f"{info['near']:g} .. {info['far']:g}" + (" (NDC)" if info["ndc"] else "")
    cache = f"{info['cache_path']} ({_size(info['cache_bytes'])}, "
    cache += "built)" if info["cache_built"] else "not built yet: run with --build-cache)"
    lines = [
        f"dataset      {info['root']}",
        f"layout       {info['layout']} (frames from {info['source']} files)",
        f"cameras      {len(cams)}: {shown}",
        f"test camera  {info['test_camera']} ({len(cams) - 1} training cameras)",
        f"frames       {info['frames']} (source frames {info['frame_start']}.."
        f"{info['frame_start'] + info['frames'] - 1}) at {info['fps']:g} fps",
        f"size         {info['width']}x{info['height']} (downsample {info['downsample']})",
        f"focal        {info['intrinsics']['fx']:.2f} px (test camera)",
        f"near/far     {near_far}",
        f"scene box    {info['bbox'][0]} .. {info['bbox'][1]}",
        f"background   {info['background']}",
    ]
    if info["offsets_gt_frames"] is not None:
        offs = ", ".join(f"{o:+.2f}" for o in info["offsets_gt_frames"][:8])
        lines.append(f"offsets (gt) {offs}{' ...' if len(cams) > 8 else ''} frames")
    if info.get("offsets_init_frames") is not None:
        offs = ", ".join(f"{o:+.2f}" for o in info["offsets_init_frames"][:8])
        lines.append(f"offsets init {offs}{' ...' if len(cams) > 8 else ''} frames "
                     "(offsets_init.json: train starts from it)")
    lines.append(f"cache        {cache}")
    return lines


@click.command("inspect")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the last line).")
@click.option("--downsample", type=click.IntRange(min=1), default=1, show_default=True,
              help="Integer downsampling factor of the frames.")
@click.option("--test-camera", default=None, metavar="NAME",
              help="Held-out camera, by name (cam00) or index [default: the first camera].")
@click.option("--max-frames", type=click.IntRange(min=1), default=None,
              help="Use at most this many frames.")
@click.option("--background", type=click.Choice(["white", "black"]), default="white",
              show_default=True, help="Background RGBA frames are composited on.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the frame cache [default: DATA/.cache].")
@click.option("--build-cache", is_flag=True, help="Decode the frames into the cache now.")
@user_errors
def inspect(data, as_json, downsample, test_camera, max_frames, background, cache_dir, build_cache):
    """Read the dataset in DATA and print its layout, cameras, frames and cache."""
    from taichi_syncnerf.data.dataset import load_dataset
    from taichi_syncnerf.data.loaders import DataWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        ds = load_dataset(data, downsample=downsample, max_frames=max_frames,
                          test_camera=test_camera, background=background, cache_dir=cache_dir,
                          build_cache=build_cache,
                          progress=build_cache and not as_json and sys.stderr.isatty())
    for w in caught:
        if issubclass(w.category, DataWarning):
            click.echo(f"warning: {w.message}", err=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    info = ds.summary()
    if ds.cache is not None:
        info["cache_bytes"] = ds.cache.data_path.stat().st_size
    if as_json:
        click.echo(json.dumps(info))
    else:
        click.echo("\n".join(_describe(info)))
