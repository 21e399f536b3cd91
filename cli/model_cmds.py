"""train / testoptim / render / eval."""
from __future__ import annotations

import sys

import click

from taichi_syncnerf.cli.common import runtime_options, user_errors

_NOT_YET = "no model is available yet in this version of taichi-syncnerf"


def _unavailable(name):
    click.echo(f"error: {name}: {_NOT_YET}", err=True)
    sys.exit(3)


@click.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--data", type=click.Path(file_okay=False), default=None, help="Dataset folder.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Run folder.")
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in --out.")
@click.option("--no-sync", is_flag=True, help="Train the baseline with offsets fixed at 0.")
@click.option("-o", "overrides", multiple=True, metavar="KEY=VALUE", help="Config override.")
@runtime_options
@user_errors
def train(config, data, out, resume, no_sync, overrides, arch, threads, precision):
    """Train a dynamic radiance field and per-camera time offsets."""
    _unavailable("train")


@click.command()
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--steps", type=int, default=None)
@runtime_options
@user_errors
def testoptim(run, steps, arch, threads, precision):
    """Optimise the held-out camera's time offset with the model frozen."""
    _unavailable("testoptim")


@click.command()
@click.argument("run", type=click.Path(file_okay=False))
@runtime_options
@user_errors
def render(run, arch, threads, precision):
    """Render videos from a trained run."""
    _unavailable("render")


COMMANDS = [train, testoptim, render]
