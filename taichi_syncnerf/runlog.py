"""The human-readable record of a run: log.jsonl, offsets.json, run.json."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from taichi_syncnerf import FORMAT_VERSION, __version__
from taichi_syncnerf.errors import UserError
from taichi_syncnerf.io_utils import write_json_atomic


def _clean(v):
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return v if math.isfinite(v) else None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.ndarray):
        return [_clean(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
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
            f.write(json.dumps(_clean(record)) + "\n")
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


def write_run_marker(run: Path, extra: dict | None = None) -> None:
    write_json_atomic(Path(run) / "run.json", {"format_version": FORMAT_VERSION,
                                               "package_version": __version__, **(extra or {})})


def offsets_document(names, offsets_frames, fps: float, test_index: int, trainable=None) -> dict:
    cams = []
    for i, (name, off) in enumerate(zip(names, offsets_frames)):
        cams.append({
            "name": name,
            "split": "test" if i == test_index else "train",
            "offset_frames": float(off),
            "offset_seconds": float(off) / float(fps),
        })
    return {"fps": float(fps), "convention": "frame f of this camera shows scene time f + offset_frames",
            "cameras": cams}


def read_offsets_document(path: Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text())
        _ = [c["offset_frames"] for c in doc["cameras"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        raise UserError(f"{path}: missing or malformed offsets file") from None
    return doc


def write_json(path: Path, obj) -> None:
    write_json_atomic(path, _clean(obj))
