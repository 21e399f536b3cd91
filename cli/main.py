"""The ``taichi-syncnerf`` command line."""
from __future__ import annotations

import click

from taichi_syncnerf import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="taichi-syncnerf")
def main():
    """Dynamic radiance fields from unsynchronised multi-view video (Sync-NeRF, in Taichi)."""


def _register():
    from taichi_syncnerf.cli import model_cmds

    for cmd in model_cmds.COMMANDS:
        main.add_command(cmd)
    try:
        from taichi_syncnerf.cli import data_cmds
    except ImportError:  # pragma: no cover - during partial checkouts only
        return
    for cmd in getattr(data_cmds, "COMMANDS", []):
        main.add_command(cmd)


_register()

if __name__ == "__main__":
    main()
