"""The checkpoint file format (the run folder that holds them: :mod:`taichi_syncnerf.run_folder`).

A checkpoint is an uncompressed ``.npz`` of plain arrays (no pickled objects): ``meta`` is a JSON
string with the format version, package version and step; every other key is
``<component>/<name>`` holding a numeric array. Files are written atomically and named
``step-00001234.npz`` so a listing sorts by step.

Checkpoints of the published presets hold GiBs of grids and optimiser moments, so both directions
go one array at a time: :func:`write_checkpoint` converts and writes each entry in turn, and
:func:`load_checkpoint` checks the whole file (every entry's CRC and header) but hands back a
:class:`CheckpointArrays` that reads an entry only when it is looked up. A model that only renders
never reads the moments, and no more than one array is held beyond what the caller keeps.
"""
from __future__ import annotations

import json
import os
import weakref
import zipfile
from collections import ChainMap
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from taichi_syncnerf import FORMAT_VERSION, __version__
from taichi_syncnerf.errors import UserError
from taichi_syncnerf.io_utils import atomic_path

_READ_BLOCK = 4 << 20
_DAMAGE = (OSError, ValueError, zipfile.BadZipFile, EOFError)
_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class UnreadableCheckpoint(UserError):
    """A checkpoint file that cannot be read back (truncated, damaged, not an .npz)."""


class CheckpointArrays(Mapping):
    """The arrays of one checkpoint file, each read from the file when it is looked up.

    The file stays open while the mapping lives (a writer's rotation cannot take it away
    underneath); :meth:`close` or garbage collection closes it."""

    def __init__(self, path: Path, archive: zipfile.ZipFile, members: dict[str, str]):
        self.path = Path(path)
        self._zip = archive
        self._members = members
        self._closer = weakref.finalize(self, archive.close)

    def __getitem__(self, key: str) -> np.ndarray:
        name = self._members[key]
        try:
            with self._zip.open(name) as f:
                return np.lib.format.read_array(f, allow_pickle=False)
        except _DAMAGE as e:
            raise UnreadableCheckpoint(f"{self.path}: entry {key} cannot be read ({e.__class__.__name__})") \
                from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def close(self) -> None:
        self._closer()


class Prefixed(Mapping):
    """The entries of ``base`` under ``prefix``, with the prefix removed from their keys (a view:
    nothing is read until looked up)."""

    def __init__(self, base: Mapping, prefix: str):
        self._base, self._prefix = base, prefix

    def __getitem__(self, key: str):
        return self._base[self._prefix + key]

    def __iter__(self):
        n = len(self._prefix)
        return (k[n:] for k in self._base if k.startswith(self._prefix))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def write_checkpoint(path: Path, step: int, arrays: Mapping[str, np.ndarray], meta: dict) -> Path:
    """Write one checkpoint file atomically: ``arrays`` plus ``meta`` (JSON-able, with the format
    version, package version and ``step`` added). Entries are converted and written one at a time
    (``arrays`` may be a :class:`CheckpointArrays`, or a ChainMap over one)."""
    full_meta = {**meta, "format_version": FORMAT_VERSION, "package_version": __version__, "step": int(step)}
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
                _write_entry(z, "meta", np.array(json.dumps(full_meta)))
                for k in arrays:
                    if k == "meta":
                        raise ValueError("checkpoint entry name 'meta' is reserved")
                    a = np.asarray(arrays[k])
                    if a.dtype.hasobject:
                        raise TypeError(f"checkpoint entry {k} is not a numeric array")
                    _write_entry(z, k, a)
                    del a
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def update_checkpoint_file(path: Path, arrays: Mapping[str, np.ndarray], meta: dict) -> Path:
    """Rewrite checkpoint ``path`` atomically with some of its arrays and meta entries replaced
    (the others as they are, copied an entry at a time)."""
    old_meta, old = load_checkpoint(path)
    try:
        return write_checkpoint(path, int(old_meta["step"]), ChainMap(dict(arrays), old), {**old_meta, **meta})
    finally:
        old.close()


def _write_entry(z: zipfile.ZipFile, key: str, a: np.ndarray) -> None:
    with z.open(key + ".npy", "w", force_zip64=True) as out:
        np.lib.format.write_array(out, np.asanyarray(a), allow_pickle=False)


def load_checkpoint(path: Path) -> tuple[dict, CheckpointArrays]:
    """``(meta, arrays)`` of one checkpoint file. The whole file is checked first (every entry's CRC
    and array header): a truncated or damaged file is an :class:`UnreadableCheckpoint`; the arrays
    themselves are read when looked up (:class:`CheckpointArrays`)."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise                    # gone (a writer's rotation): the caller looks for another one
    except _DAMAGE as e:
        raise UnreadableCheckpoint(f"{path}: not a readable checkpoint ({e.__class__.__name__})") from None
    try:
        members = _check_members(path, archive)
        if "meta" not in members:
            raise UnreadableCheckpoint(f"{path}: not a taichi-syncnerf checkpoint (no meta entry)")
        arrays = CheckpointArrays(path, archive, members)
        try:
            meta = json.loads(str(arrays["meta"]))
        except json.JSONDecodeError:
            raise UnreadableCheckpoint(f"{path}: checkpoint metadata is corrupt") from None
        if not isinstance(meta, dict):
            raise UnreadableCheckpoint(f"{path}: checkpoint metadata is corrupt")
        del members["meta"]
        check_format(str(path), meta)
    except BaseException:
        archive.close()
        raise
    return meta, arrays


def _check_members(path: Path, archive: zipfile.ZipFile) -> dict[str, str]:
    """Key -> member name of every entry, after reading each one through (the CRC check) and its
    array header (plain arrays only)."""
    members = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise UnreadableCheckpoint(f"{path}: not a taichi-syncnerf checkpoint (entry {info.filename})")
        key = info.filename[:-len(".npy")]
        try:
            with archive.open(info) as f:
                read_header = _HEADERS.get(np.lib.format.read_magic(f))
                if read_header is None:
                    raise ValueError("unknown .npy version")
                _, _, dtype = read_header(f)
                while f.read(_READ_BLOCK):
                    pass
        except _DAMAGE as e:
            raise UnreadableCheckpoint(f"{path}: not a readable checkpoint ({e.__class__.__name__} in {key})") \
                from None
        if dtype.hasobject:
            raise UnreadableCheckpoint(f"{path}: entry {key} holds Python objects, not numbers")
        members[key] = info.filename
    return members


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
    state = Prefixed(arrays, "adam/")
    try:
        optimizer.load_state_dict(state)
    except ValueError as e:
        raise UserError(f"{where}: {e}") from None
