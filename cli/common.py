"""Options and helpers shared by the commands."""
from __future__ import annotations

import functools
import sys

import click

from taichi_syncnerf.errors import UserError


def runtime_options(f):
    """Add --arch/--threads/--precision; the command calls :func:`init_runtime`."""
    f = click.option(
        "--precision", type=click.Choice(["f32", "f64"]), default="f32", show_default=True,
        help="Float width of every field and kernel.")(f)
    f = click.option(
        "--threads", type=click.IntRange(1, 1024), default=None,
        help="CPU threads for Taichi kernels (default: all cores).")(f)
    f = click.option(
        "--arch", type=click.Choice(["auto", "cpu", "cuda", "vulkan"]), default="auto",
        show_default=True, help="Backend: auto picks CUDA when a GPU is present, else CPU.")(f)
    return f


def init_runtime(arch: str, threads: int | None, precision: str):
    from taichi_syncnerf import runtime

    info = runtime.init(arch=arch, threads=threads, precision=precision)
    if info.note:
        click.echo(f"warning: {info.note}", err=True)
    return info


def user_errors(f):
    """Turn a UserError into one line on stderr and exit status 2 (no traceback)."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except UserError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)

    return wrapper
