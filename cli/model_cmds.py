"""train / testoptim / render / eval."""
from __future__ import annotations

from pathlib import Path

import click

from taichi_syncnerf.cli.common import init_runtime, runtime_options, user_errors
from taichi_syncnerf.errors import UserError


@click.command()
@click.argument("config")
@click.option("--data", type=click.Path(file_okay=False), default=None,
              help="Dataset folder (default: data.path of the config).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run folder (default: runs/<config name>).")
@click.option("--resume", is_flag=True,
              help="Continue from the last checkpoint in --out, with its config.yaml (no -o, no --no-sync).")
@click.option("--no-sync", is_flag=True, help="Train the baseline with offsets fixed at 0.")
@click.option("-o", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Config override, e.g. -o train.steps=2000 (repeatable).")
@click.option("--eval/--no-eval", "do_eval", default=True, show_default=True,
              help="Evaluate at the end and write metrics.json.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--view", "view_port", type=click.IntRange(1, 65535), default=None, metavar="PORT",
              help="Watch the training in the browser at http://127.0.0.1:PORT (needs the viewer extra).")
@runtime_options
@user_errors
def train(config, data, out, resume, no_sync, overrides, do_eval, quiet, view_port, arch, threads, precision):
    """Train a dynamic radiance field and per-camera time offsets.

    CONFIG is a YAML file or a preset name such as synthetic/sync-kplanes.
    """
    if resume:
        if out is None:
            raise UserError("--resume needs --out RUN")
        if overrides or no_sync:
            given = ", ".join([f"-o {o}" for o in overrides] + (["--no-sync"] if no_sync else []))
            raise UserError(f"--resume continues with {Path(out) / 'config.yaml'} as it is: overrides are not "
                            f"allowed there ({given})")
    from taichi_syncnerf.config import load_config
    from taichi_syncnerf.data.synthetic import dataset_for_config
    from taichi_syncnerf.run_folder import RunFolder
    from taichi_syncnerf.train import Interrupted, train_and_evaluate

    if resume:
        folder = RunFolder.open(out)
        cfg, data = folder.config(), data or folder.data_dir(must_exist=False)
    else:
        cfg = load_config(config, list(overrides) + (["model.sync=false"] if no_sync else []))
        out = out or str(Path("runs") / cfg["name"])
    data = dataset_for_config(cfg, data, log=lambda m: click.echo(m, err=True))
    if view_port is not None:
        from taichi_syncnerf.cli.view_cmd import LiveViewer

        viewer = LiveViewer(out, view_port, arch, precision)
    init_runtime(arch, threads, precision)
    try:
        record, metrics = train_and_evaluate(cfg, data, out, resume=resume, progress=not quiet, evaluate=do_eval)
    except Interrupted as e:
        click.echo(str(e), err=True)
        raise SystemExit(130) from None
    click.echo(f"trained {record.get('step')} steps: batch PSNR {record.get('batch_psnr', float('nan')):.2f} dB "
               f"(training batch) -> {out}")
    if metrics is not None:
        _print_metrics(metrics)
    if view_port is not None:
        viewer.wait()


def _print_metrics(m: dict) -> None:
    for split in ("test", "train"):
        if split in m:
            s = m[split]
            lp = "n/a" if s.get("lpips") is None else f"{s['lpips']:.4f}"
            floor = s.get("median_image_psnr")
            vs = "" if floor is None else f"  (temporal-median image: {floor:.2f} dB)"
            click.echo(f"{split:5s} PSNR {s['psnr']:.2f} dB  SSIM {s['ssim']:.4f}  LPIPS {lp}{vs}")
    if "test_before_testoptim" in m:
        click.echo(f"test before testoptim: PSNR {m['test_before_testoptim']['psnr']:.2f} dB")
    if "offsets" in m:
        click.echo(f"offsets MAE (train cameras, after removing the global shift): "
                   f"{m['offsets']['mae_frames']:.3f} frames")


@click.command()
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--steps", type=int, default=None, help="Optimisation steps (default: testoptim.steps).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@runtime_options
@user_errors
def testoptim(run, steps, quiet, arch, threads, precision):
    """Optimise the held-out camera's time offset with the model frozen, then evaluate it."""
    from taichi_syncnerf.run_folder import RunFolder
    from taichi_syncnerf.testoptim import testoptim as run_testoptim

    RunFolder.open(run)
    init_runtime(arch, threads, precision)
    _print_metrics(run_testoptim(run, steps, progress=not quiet))


@click.command(name="eval")
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--quiet", is_flag=True, help="No progress bar.")
@runtime_options
@user_errors
def eval_cmd(run, quiet, arch, threads, precision):
    """Recompute metrics.json of a run."""
    from taichi_syncnerf.evaluate import evaluate_run
    from taichi_syncnerf.run_folder import RunFolder

    RunFolder.open(run)
    init_runtime(arch, threads, precision)
    _print_metrics(evaluate_run(run, progress=not quiet))


@click.command()
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True)
@click.option("--path", "path_kind", type=click.Choice(["dataset", "spiral"]), default="dataset",
              show_default=True, help="The camera's own view, or a spiral around the rig.")
@click.option("--camera-path", "camera_path", type=click.Path(dir_okay=False), default=None,
              help="Render a camera_path.json (nerfstudio's layout, written by the viewer): one frame per "
                   "entry at its render_width x render_height and scene time (instead of --split/--path).")
@click.option("--time", "time_mode", default="sweep", show_default=True,
              help="'sweep' through the video, or a fixed frame index.")
@click.option("--frames", "n_frames", type=int, default=None, help="Number of video frames.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Output .mp4.")
@click.option("--png", "png_dir", type=click.Path(file_okay=False), default=None,
              help="Also write the frames as PNGs into this folder (with --camera-path and no --out: only PNGs).")
@click.option("--quiet", is_flag=True)
@runtime_options
@user_errors
def render(run, split, path_kind, camera_path, time_mode, n_frames, out, png_dir, quiet, arch, threads, precision):
    """Render a video from a trained run (prediction | ground truth | error for dataset views), or a
    camera path made in the viewer (--camera-path FILE.json)."""
    from taichi_syncnerf.render_video import render_camera_path, render_video
    from taichi_syncnerf.run_folder import RunFolder

    RunFolder.open(run)
    if camera_path is not None:
        from taichi_syncnerf.camera_path import read_path

        given = [o for o, v in (("--time", time_mode != "sweep"), ("--frames", n_frames is not None)) if v]
        if given:
            raise UserError(f"--camera-path sets every frame's pose and time: {', '.join(given)} "
                            "cannot be used with it")
        read_path(camera_path)              # a bad file is refused before the model is loaded
        init_runtime(arch, threads, precision)
        path = render_camera_path(run, camera_path, out, png_dir, progress=not quiet)
        click.echo(f"wrote {path}")
        return
    if time_mode != "sweep":
        try:
            time_mode = float(time_mode)
        except ValueError:
            raise UserError(f"--time must be 'sweep' or a frame index, got {time_mode!r}") from None
    init_runtime(arch, threads, precision)
    path = render_video(run, split, path_kind, time_mode, n_frames, out, png_dir, progress=not quiet)
    click.echo(f"wrote {path}")


COMMANDS = [train, testoptim, render, eval_cmd]
