"""view: a trained (or training) run in the browser."""
from __future__ import annotations

import time
from pathlib import Path

import click

from taichi_syncnerf.cli.common import init_runtime, runtime_options, user_errors
from taichi_syncnerf.errors import UserError


@click.command()
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port of the page (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 to let other machines connect).")
@click.option("--live", is_flag=True,
              help="Training is running: wait for the run's first checkpoint and show each newer one as it appears.")
@click.option("--max-load", type=click.FloatRange(0.01, 1.0), default=None,
              help="Share of one core the renders may take (each is followed by a rest) "
                   "[default: 0.1 with --live, else 1].")
@click.option("--nice", "niceness", type=click.IntRange(0, 19), default=None,
              help="Once started, lower the priority (Unix nice) of every thread of the viewer by this much "
                   "(renders, reloads, the server that sends the frames), so that it takes only the CPU the "
                   "training leaves; at 19 the threads are also SCHED_IDLE [default: 19 with --live, else 0].")
@click.option("--wait-timeout", type=float, default=None,
              help="With --live: give up when no checkpoint appears within this many seconds.")
@click.option("--benchmark", "bench_heights", default=None, metavar="SIZE1,SIZE2,...",
              help="Print frame times at these sizes, then exit: a height (e.g. 96,384; the dataset's aspect) or a "
                   "browser canvas WxH (956x800: a 1280x800 window less the panel).")
@runtime_options
@user_errors
def view(run, port, host, live, max_load, niceness, wait_timeout, bench_heights, arch, threads, precision):
    """Look at a run in the browser: the model rendered from your camera, a time slider, the rig's offsets.

    Needs the viewer extra: pip install -e '.[viewer]'.
    """
    from taichi_syncnerf.run_folder import RunFolder
    from taichi_syncnerf.viewer import require_viser

    if bench_heights is not None:
        heights = _heights(bench_heights)
        RunFolder.open(run)
        init_runtime(arch, threads, precision)
        from taichi_syncnerf.viewer.bench import benchmark

        benchmark(run, heights, log=lambda s: click.echo(s, err=True))
        return
    require_viser()
    if live:
        from taichi_syncnerf.viewer.live import wait_for_run

        wait_for_run(Path(run), wait_timeout, log=lambda s: click.echo(s, err=True))
    else:
        RunFolder.open(run)
    init_runtime(arch, threads, precision)
    from taichi_syncnerf.viewer.app import Viewer

    viewer = Viewer(run, host=host, port=port, live=live,
                    max_load=(0.1 if live else 1.0) if max_load is None else max_load,
                    niceness=(19 if live else 0) if niceness is None else niceness,
                    log=lambda s: click.echo(s, err=True))
    click.echo(f"viewer of {run} (step {viewer.model.step}) at {viewer.url}  (Ctrl-C to stop)", err=True)
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        viewer.stop()


def _heights(text: str) -> list:
    """Sizes of --benchmark: heights (int) or canvases (width, height)."""
    sizes = []
    try:
        for part in (p.strip() for p in text.split(",")):
            if part:
                sizes.append(tuple(int(v) for v in part.lower().split("x")) if "x" in part.lower() else int(part))
    except ValueError:
        raise UserError(f"--benchmark takes heights or WxH sizes in pixels separated by commas, "
                        f"got {text!r}") from None
    if not sizes or any(len(s) != 2 if isinstance(s, tuple) else False for s in sizes) or \
            min(min(s) if isinstance(s, tuple) else s for s in sizes) < 8:
        raise UserError(f"--benchmark: sizes must be at least 8 pixels (H or WxH), got {text!r}")
    return sizes


class LiveViewer:
    """``train --view PORT``: a ``view --live`` process beside the training, which needs no change for it."""

    def __init__(self, run, port: int, arch: str, precision: str):
        import atexit
        import subprocess
        import sys
        import tempfile

        from taichi_syncnerf.viewer import require_viser
        from taichi_syncnerf.viewer.app import check_port

        require_viser()
        check_port("127.0.0.1", port)
        self.url = f"http://127.0.0.1:{port}"
        self.log = Path(tempfile.gettempdir()) / f"taichi-syncnerf-view-{port}.log"
        cmd = [sys.executable, "-m", "taichi_syncnerf.cli.main", "view", str(run), "--live", "--port", str(port),
               "--threads", "1", "--arch", arch, "--precision", precision]
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        atexit.register(self.stop)
        click.echo(f"live viewer at {self.url}: it shows each checkpoint as training writes it "
                   f"(train.checkpoint_every); its log: {self.log}", err=True)

    def wait(self) -> None:
        """After training: keep showing the run until Ctrl-C."""
        if self.proc.poll() is not None:
            click.echo(f"the viewer stopped (exit {self.proc.returncode}); see {self.log}", err=True)
            return
        click.echo(f"training is over; the viewer still shows it at {self.url} (Ctrl-C to stop)", err=True)
        try:
            self.proc.wait()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        import subprocess

        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


COMMANDS = [view]
