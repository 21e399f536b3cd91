"""docs/FAULTS.md lists every fuzz case of tests/faults/cases.py (regenerate it with
``python -m tests.faults.table --write``)."""
import re

from tests.faults.cases import CASES
from tests.faults.table import DOC


def test_the_page_lists_every_case():
    text = DOC.read_text(encoding="utf-8")
    listed = re.findall(r"^\| `([a-z0-9-]+)` \|", text, flags=re.M)
    ids = [c.id for c in CASES]
    missing = sorted(set(ids) - set(listed))
    extra = sorted(set(listed) - set(ids))
    assert not missing and not extra, f"docs/FAULTS.md is stale (missing {missing}, extra {extra}): run " \
                                      "python -m tests.faults.table --write"
    assert "CRASH" not in text and "Traceback" not in text
