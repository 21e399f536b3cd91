"""Shared helpers of the command-line tests."""
from click.testing import CliRunner

from taichi_syncnerf.cli.main import main


def run(*args):
    """Invoke ``taichi-syncnerf ARGS`` in-process; arguments may be paths or numbers."""
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(res, *needles):
    """A user mistake: exit code 2 and one ``error: ...`` line naming every needle, no traceback."""
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert "Traceback" not in res.output
