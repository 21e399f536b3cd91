"""Run the whole test suite as a few pytest processes: ``python -m tests [pytest options]``.

taichi 1.7's CPU runtime can crash (segmentation fault) a process that has allocated the fields of
hundreds of models one after another (taichi-dev/taichi#8750), which one pytest process over the
whole suite does; three processes, each a third of the suite, stay far from that. Every test file
under tests/ belongs to exactly one group (the last takes whatever the first two do not name).
The last line is the total: ``N passed, N failed`` (plus skipped and errors).
"""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRST_GROUPS = [["tests/kernels", "tests/data", "tests/capture"], ["tests/models", "tests/cli", "tests/faults"]]
SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|error|errors|xfailed|xpassed)\b")


def groups() -> list:
    named = {p for g in FIRST_GROUPS for p in g}
    rest = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").iterdir()
                  if (p.is_dir() and any(p.rglob("test_*.py")) or p.name.startswith("test_") and p.suffix == ".py")
                  and p.relative_to(ROOT).as_posix() not in named)
    return [g for g in FIRST_GROUPS if all((ROOT / p).exists() for p in g)] + [rest]


def main(argv) -> int:
    totals, codes = {}, []
    for group in groups():
        proc = subprocess.Popen([sys.executable, "-m", "pytest", *argv, *group], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        last = ""
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            if SUMMARY.search(line):
                last = line
        codes.append(proc.wait())
        for n, kind in SUMMARY.findall(last):
            kind = "errors" if kind.startswith("error") else kind
            totals[kind] = totals.get(kind, 0) + int(n)
    extra = "".join(f", {totals[k]} {k}" for k in ("skipped", "errors", "xfailed", "xpassed") if totals.get(k))
    print(f"{totals.get('passed', 0)} passed, {totals.get('failed', 0)} failed{extra}")
    return 0 if all(c == 0 for c in codes) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["-q"]))
