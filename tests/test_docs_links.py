"""Every relative link of the user-facing Markdown (README.md, docs/*.md, benchmarks/README.md) resolves to a file
or folder inside the repository."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
INLINE = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")   # [text](target "title")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)           # [label]: target
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)


def relative_links(text: str) -> list:
    text = FENCE.sub("", text)                      # links in code blocks are not links
    text = re.sub(r"`[^`\n]*`", "", text)           # nor in code spans
    targets = INLINE.findall(text) + REFERENCE.findall(text)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I) and not t.startswith("#")]


def test_the_pattern_finds_relative_links_only():
    text = ("See [a](docs/A.md#x), ![img](docs/i.png \"t\"), [web](https://x.org), [top](#quick-start), "
            "`[code](no.md)`\n\n```\n[block](no.md)\n```\n[ref]: ../up.md\n")
    assert relative_links(text) == ["docs/A.md#x", "docs/i.png", "../up.md"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve_inside_the_repository(page):
    broken = []
    for target in relative_links(page.read_text()):
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if not path.exists() or ROOT not in (path, *path.parents):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: links that do not resolve inside the repository: {broken}"
