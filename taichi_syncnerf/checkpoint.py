"""The checkpoint file format (the run folder that holds them: :mod:`taichi_syncnerf.run_folder`).

A checkpoint is an uncompressed ``.npz`` of plain arrays (read with ``allow_pickle=False``):
``meta`` is a JSON string with the format version, package version and step; every other key is
``<component>/<name>`` holding a numeric array. Files are written atomically and named
``step-00001234.npz`` so a listing sorts by step.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from taichi_syncnerf import FORMAT_VERSION, __version__
from taichi_syncnerf.errors import UserError
from taichi_syncnerf.io_utils import save_npz_atomic


class UnreadableCheckpoint(UserError):
    """A checkpoint file that cannot be read back (truncated, damaged, not an .npz)."""


def write_checkpoint(path: Path, step: int, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    """Write one checkpoint file atomically: ``arrays`` plus ``meta`` (JSON-able, with the format
    version, package version and ``step`` added)."""
    full_meta = {**meta, "format_version": FORMAT_VERSION, "package_version": __version__, "step": int(step)}
    payload = {"meta": np.array(json.dumps(full_meta))}
    for k, v in arrays.items():
        a = np.asarray(v)
        if a.dtype == object:
            raise TypeError(f"checkpoint entry {k} is not a numeric array")
        payload[k] = a
    save_npz_atomic(path, **payload)
    return Path(path)


def load_checkpoint(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    path = Path(path)
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:    # the file is closed on errors too
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise                    # gone (a writer's rotation): the caller looks for another one
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise UnreadableCheckpoint(f"{path}: not a readable checkpoint ({e.__class__.__name__})") from None
    if "meta" not in arrays:
        raise UnreadableCheckpoint(f"{path}: not a taichi-syncnerf checkpoint (no meta entry)")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except json.JSONDecodeError:
        raise UnreadableCheckpoint(f"{path}: checkpoint metadata is corrupt") from None
    check_format(str(path), meta)
    return meta, arrays


def check_format(where: str, info: dict) -> None:
    """Refuse files written by another format version of taichi-syncnerf, with a clear message."""
    version = info.get("format_version")
    if not isinstance(version, int):
        raise UserError(f"{where}: no format version (not written by taichi-syncnerf?)")
    written_by = info.get("package_version")
    if version > FORMAT_VERSION:
        raise UserError(f"{where}: written by a newer taichi-syncnerf ({written_by}, format {version}); "
                        f"this is {__version__} (format {FORMAT_VERSION}): upgrade")
    if version < FORMAT_VERSION:
        raise UserError(f"{where}: written by an older taichi-syncnerf ({written_by}, format {version}); "
                        f"this one reads format {FORMAT_VERSION}: retrain or use that version")


def load_optimizer_state(optimizer, arrays: dict[str, np.ndarray], where: str) -> None:
    """Load the ``adam/...`` entries of checkpoint ``arrays`` into ``optimizer``; a state that does
    not fit the model is a one-line error naming ``where``."""
    state = {k[len("adam/"):]: v for k, v in arrays.items() if k.startswith("adam/")}
    try:
        optimizer.load_state_dict(state)
    except ValueError as e:
        raise UserError(f"{where}: {e}") from None
