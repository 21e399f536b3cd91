"""JSON records: the append-only JSON-lines log of a run, and numbers made JSON-safe."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from taichi_syncnerf.io_utils import write_json_atomic


def clean_json(v):
    """``v`` with numpy scalars and arrays as plain numbers and lists, and NaN/inf as None."""
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return v if math.isfinite(v) else None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.ndarray):
        return [clean_json(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [clean_json(x) for x in v]
    if isinstance(v, dict):
        return {k: clean_json(x) for k, x in v.items()}
    return v


class JsonlLog:
    """Append-only JSON-lines log, one record a line, flushed after each write."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (used when resuming from an earlier checkpoint)."""
        records = [r for r in self.read() if r.get("step", -1) <= step]
        from taichi_syncnerf.io_utils import write_text_atomic

        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in records))

    def append(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(clean_json(record)) + "\n")
            f.flush()

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a crash: skip it
        return out


def write_json(path: Path, obj) -> None:
    write_json_atomic(path, clean_json(obj))
