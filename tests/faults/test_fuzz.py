"""Every broken dataset, config and run folder of :mod:`tests.faults.cases` gives one line
``error: ...`` (after any ``warning: ...`` lines) naming the file and the problem, a non-zero exit
status, and no traceback."""
import pytest
from click.testing import CliRunner

from taichi_syncnerf.cli.main import main
from tests.faults.builders import TAICHI_LOG, Templates
from tests.faults.cases import CASES


@pytest.fixture(scope="session")
def templates(tmp_path_factory):
    return Templates(tmp_path_factory.mktemp("fault-templates"))


def run_case(c, tmp_path, templates):
    """(exit code, stderr lines, the error line or None, whether a traceback showed)."""
    args = c.build(tmp_path, templates)
    res = CliRunner().invoke(main, [str(a) for a in args])
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not TAICHI_LOG.match(ln)]
    crashed = res.exception is not None and not isinstance(res.exception, SystemExit)
    return res, lines, crashed


def check(c, res, lines, crashed):
    assert not crashed, f"{c.id}: {type(res.exception).__name__}: {res.exception}\n{res.output}"
    assert "Traceback" not in res.output, res.output
    assert res.exit_code == 2, (c.id, res.exit_code, res.output)
    errors = [ln for ln in lines if ln.startswith("error: ")]
    others = [ln for ln in lines if not ln.startswith(("error: ", "warning: "))]
    assert len(errors) == 1 and lines[-1] == errors[0] and not others, (c.id, lines)
    for n in c.needles:
        assert n in errors[0], (c.id, n, errors[0])
    return errors[0]


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_fault(c, tmp_path, templates):
    res, lines, crashed = run_case(c, tmp_path, templates)
    check(c, res, lines, crashed)


def test_enough_cases():
    assert len(CASES) >= 30
