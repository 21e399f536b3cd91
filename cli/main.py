"""The ``taichi-syncnerf`` command line."""
from __future__ import annotations

import click

from taichi_syncnerf import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="taichi-syncnerf")
def main():
    """Dynamic radiance fields from unsynchronised multi-view video (Sync-NeRF, in Taichi)."""
    _install_warning_format()
    from taichi_syncnerf.io_utils import ignore_file_size_signal

    ignore_file_size_signal()      # a write past `ulimit -f` fails with EFBIG: one line, not a kill


def _install_warning_format():
    """Show dataset and config warnings as one ``warning: ...`` line each, not Python's format."""
    import warnings

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, UserWarning):
            click.echo(f"warning: {message}", err=True)
        else:
            _default(message, category, filename, lineno, file, line)

    _default = warnings.showwarning
    warnings.showwarning = show


def _register():
    from taichi_syncnerf.cli import model_cmds

    for cmd in model_cmds.COMMANDS:
        main.add_command(cmd)
    from taichi_syncnerf.cli import view_cmd

    for cmd in view_cmd.COMMANDS:
        main.add_command(cmd)
    from taichi_syncnerf.cli import prepare_cmd

    for cmd in prepare_cmd.COMMANDS:
        main.add_command(cmd)
    from taichi_syncnerf.cli import export_cmd

    for cmd in export_cmd.COMMANDS:
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
