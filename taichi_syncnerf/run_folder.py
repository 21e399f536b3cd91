"""The run folder: the one module that reads and writes a run's files.

::

    RUN/
      run.json          format version, package version, the dataset's folder      (create)
      config.yaml       the resolved config, plain YAML                             (create)
      checkpoints/      step-00001234.npz: parameters, optimiser state, offsets,    (train, testoptim)
                        RNG state; the ONE source of truth for the learned offsets
      offsets.json      report of the offsets, written from the newest checkpoint   (train, testoptim)
      metrics.json      evaluation figures                                          (train, eval, testoptim)
      log.jsonl         one record per logged training step                         (train)
      testoptim.jsonl   the test-time optimisation's steps                          (testoptim)
      training.png, offsets.png   plots of the log                                  (train)
      .lock             the writer's PID, host and command while one writes        (train, testoptim, eval)

Writers (``train``, ``testoptim``, ``eval``) hold :meth:`RunFolder.writing`, a lock that a second
writer is refused; a lock left by a killed process on this host is taken over with a warning.
Readers (``render``, ``view``) take no lock. Every file is written atomically.

:func:`open_run` is the one way to load a trained run: config, dataset and model from the newest
readable checkpoint (a damaged newer one is skipped with a warning).
"""
from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taichi_syncnerf.checkpoint import (UnreadableCheckpoint, check_format, load_checkpoint, update_checkpoint_file,
                                       write_checkpoint)
from taichi_syncnerf.errors import UserError
from taichi_syncnerf.io_utils import write_json_atomic, write_text_atomic
from taichi_syncnerf.runlog import JsonlLog, clean_json

_CKPT = re.compile(r"^step-(\d{8})\.npz$")
KEEP_CHECKPOINTS = 3


class RunFolder:
    """One run folder (see the module docstring for its files)."""

    def __init__(self, path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # ------------------------------------------------------------------ paths
    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def marker_path(self) -> Path:
        return self.path / "run.json"

    @property
    def offsets_path(self) -> Path:
        return self.path / "offsets.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def lock_path(self) -> Path:
        return self.path / ".lock"

    def log(self) -> JsonlLog:
        return JsonlLog(self.path / "log.jsonl")

    def testoptim_log(self) -> JsonlLog:
        return JsonlLog(self.path / "testoptim.jsonl")

    def plot_path(self, name: str) -> Path:
        return self.path / f"{name}.png"

    # ------------------------------------------------------------------ create / open
    @classmethod
    def create(cls, path, cfg: dict, data_dir) -> "RunFolder":
        """A new run folder with its config.yaml and run.json; refuses a folder that is not empty."""
        from taichi_syncnerf.config import dump_config

        run = cls.require_new(path)
        run.path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run.config_path, dump_config(cfg))
        run._write_marker({"data": str(Path(data_dir).resolve())})
        return run

    @classmethod
    def require_new(cls, path) -> "RunFolder":
        """A folder a new run can be created in (missing or empty), else a one-line error."""
        run = cls(path)
        if run.path.exists() and (not run.path.is_dir() or any(run.path.iterdir())):
            raise UserError(f"{run.path}: run folder exists and is not empty (use --resume, or another --out)")
        return run

    @classmethod
    def open(cls, path) -> "RunFolder":
        """An existing run folder this version can read (else a one-line error saying why)."""
        run = cls(path)
        run.check()
        return run

    def check(self) -> None:
        if not self.path.is_dir():
            raise UserError(f"{self.path}: run folder not found")
        if not self.config_path.is_file():
            raise UserError(f"{self.path}: not a run folder (no config.yaml)")
        if not self.marker_path.is_file():
            raise UserError(f"{self.path}: not a taichi-syncnerf run folder (no run.json)")
        check_format(str(self.path), self.marker())

    def is_started(self) -> bool:
        """Whether a training has created this folder (config.yaml and run.json are there)."""
        return self.config_path.is_file() and self.marker_path.is_file()

    def _write_marker(self, extra: dict) -> None:
        from taichi_syncnerf import FORMAT_VERSION, __version__

        write_json_atomic(self.marker_path, {"format_version": FORMAT_VERSION, "package_version": __version__,
                                             **extra})

    def marker(self) -> dict:
        try:
            info = json.loads(self.marker_path.read_text())
        except (OSError, json.JSONDecodeError):
            raise UserError(f"{self.marker_path}: corrupt run metadata") from None
        if not isinstance(info, dict):
            raise UserError(f"{self.marker_path}: corrupt run metadata")
        return info

    def config(self) -> dict:
        from taichi_syncnerf.config import load_resolved

        return load_resolved(self.config_path)

    def data_dir(self, must_exist: bool = True) -> str:
        data = self.marker().get("data")
        if data is None or (must_exist and not Path(data).exists()):
            raise UserError(f"{self.path}: its dataset {data} is not there any more")
        return str(data)

    # ------------------------------------------------------------------ checkpoints
    def checkpoints(self) -> list[Path]:
        """Checkpoint files, oldest first."""
        d = self.checkpoint_dir
        if not d.is_dir():
            return []
        return sorted(p for p in d.iterdir() if _CKPT.match(p.name))

    def newest_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def save_checkpoint(self, step: int, arrays: dict, meta: dict, keep: int = KEEP_CHECKPOINTS) -> Path:
        """Write ``step-XXXXXXXX.npz`` atomically; keep the newest ``keep`` checkpoints."""
        path = write_checkpoint(self.checkpoint_dir / f"step-{int(step):08d}.npz", step, arrays, meta)
        for old in self.checkpoints()[:-keep]:
            old.unlink(missing_ok=True)
        return path

    def load_newest_checkpoint(self, warn=None) -> tuple[Path, dict, dict]:
        """(path, meta, arrays) of the newest checkpoint that reads back; each newer one that does not
        is skipped with a warning naming it and why. A run with no readable checkpoint is an error."""
        found = self.checkpoints()
        if not found:
            raise UserError(f"{self.path}: the run has no checkpoint")
        warn = warn or _warn
        reasons = []
        for path in reversed(found):
            try:
                meta, arrays = load_checkpoint(path)
            except FileNotFoundError:
                continue                      # removed by a writer between listing and reading
            except UnreadableCheckpoint as e:
                reasons.append(str(e))
                continue
            for r in reasons:
                warn(f"skipped {r}; using {path.name}")
            return path, meta, arrays
        raise UserError(f"{self.path}: no readable checkpoint ({'; '.join(reasons)})")

    def update_checkpoint(self, path: Path, arrays: dict, meta: dict) -> Path:
        """Rewrite checkpoint ``path`` with some of its arrays and meta entries replaced (the others
        as they are): how testoptim stores the test camera's offset without touching the rest."""
        return update_checkpoint_file(path, arrays, meta)

    # ------------------------------------------------------------------ reports
    def write_offsets(self, doc: dict) -> None:
        write_json_atomic(self.offsets_path, clean_json(doc))

    def read_metrics(self) -> dict:
        p = self.metrics_path
        if not p.exists():
            return {}
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError:
            raise UserError(f"{p}: corrupt metrics file") from None

    def write_metrics(self, metrics: dict) -> None:
        write_json_atomic(self.metrics_path, clean_json(metrics))

    # ------------------------------------------------------------------ the writers' lock
    @contextmanager
    def writing(self, command: str | None = None):
        """Hold the run's writer lock for the duration of the block (see :class:`RunLock`)."""
        lock = RunLock(self.lock_path, command or " ".join(["taichi-syncnerf", *sys.argv[1:2]]))
        lock.acquire()
        try:
            yield self
        finally:
            lock.release()


def _warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, from /proc), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = _process_start(pid)
    return start is None or now is None or now == start      # a reused PID is another process


class RunLock:
    """A lock file holding the writer's PID, host, process start time and command.

    ``acquire`` creates it exclusively. When it exists: a live writer on this host, or any writer on
    another host, is a one-line error; a lock whose process on this host is gone (killed) is taken
    over with a warning.
    """

    def __init__(self, path: Path, command: str):
        self.path = Path(path)
        self.command = command
        self.held = False

    def _record(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(), "start": _process_start(os.getpid()),
                "command": self.command, "since": time.strftime("%Y-%m-%d %H:%M:%S")}

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._handle_existing()
                continue
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(self._record()) + "\n")
            self.held = True
            return
        raise UserError(f"{self.path.parent}: could not take the run's lock {self.path}")

    def _handle_existing(self) -> None:
        try:
            info = json.loads(self.path.read_text() or "{}")
        except FileNotFoundError:
            return                                  # released meanwhile: try again
        except (OSError, json.JSONDecodeError):
            info = {}
        pid, host = info.get("pid"), info.get("host")
        run = self.path.parent
        if isinstance(pid, int) and host == socket.gethostname():
            if _alive(pid, info.get("start")):
                raise UserError(f"{run}: another process writes this run ({info.get('command', '?')}, PID {pid}, "
                                f"since {info.get('since', '?')}); wait for it to finish or stop it")
            _warn(f"{run}: taking over the lock of process {pid} ({info.get('command', '?')}), which is gone")
        elif isinstance(pid, int):
            raise UserError(f"{run}: locked by process {pid} on host {host} ({info.get('command', '?')}); "
                            f"if that process is gone, delete {self.path}")
        else:
            _warn(f"{run}: replacing an unreadable lock file {self.path.name}")
        self.path.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            try:
                info = json.loads(self.path.read_text())
                if info.get("pid") == os.getpid():
                    self.path.unlink()
            except (OSError, json.JSONDecodeError):
                pass
            self.held = False


@dataclass
class OpenedRun:
    """A trained run loaded for use: its folder, config, dataset (a RaySource), model, and the
    checkpoint the model was loaded from (its path and meta)."""

    folder: RunFolder
    cfg: dict
    source: object
    model: object
    checkpoint: Path
    meta: dict

    def __post_init__(self):
        self.stamp = _stamp(self.checkpoint)

    @property
    def step(self) -> int:
        return int(self.meta.get("step", 0))

    def offsets_document(self) -> dict:
        """The offsets report of the model as loaded (learned, with the aligned truth when known)."""
        s = self.source
        return self.model.offsets.document(s.camera_names, s.fps, s.test_index, truth=s.offsets_gt,
                                           initial=getattr(s.ds, "offsets_init_frames", None),
                                           train_indices=s.train_indices)

    def reload_if_newer(self) -> bool:
        """Load the newest readable checkpoint when it is not the one loaded (a newer step, or the
        same file rewritten by testoptim); True when it did."""
        newest = self.folder.newest_checkpoint()
        if newest is None or (newest, _stamp(newest)) == (self.checkpoint, self.stamp):
            return False
        try:
            path, meta, arrays = self.folder.load_newest_checkpoint(warn=lambda m: None)
        except UserError:
            return False
        stamp = _stamp(path)
        if (path, stamp) == (self.checkpoint, self.stamp):
            return False
        shown = self.model.state_arrays()
        try:
            self.model.load_state_arrays(arrays, str(path), optimizer=False)
        except UserError:
            # a checkpoint this model cannot take: what was loaded of it is undone, and it is not retried
            self.model.load_state_arrays(shown, str(self.checkpoint), optimizer=False)
            self.checkpoint, self.stamp = path, stamp
            return False
        finally:
            arrays.close()
        self.checkpoint, self.stamp, self.meta = path, stamp, meta
        return True


def _stamp(path: Path) -> int | None:
    try:
        return Path(path).stat().st_mtime_ns
    except OSError:
        return None


def build(cfg: dict, data_dir, progress: bool = True):
    """The dataset (as rays) and the model of ``cfg`` (no training, no checkpoint)."""
    from taichi_syncnerf.models.registry import build_model
    from taichi_syncnerf.rays import RaySource

    source = RaySource.open(data_dir, cfg, progress=progress)
    return source, build_model(cfg, source)


def open_run(path, optimizer: bool = False, folder: RunFolder | None = None, data_dir=None) -> OpenedRun:
    """Load a trained run: its config, dataset (``data_dir``, default: the one in run.json) and the
    model from its newest readable checkpoint (with the optimiser state when ``optimizer``). Used by
    eval, testoptim, render, the viewer and ``train --resume``."""
    run = folder or RunFolder.open(path)
    cfg = run.config()
    ckpt, meta, arrays = run.load_newest_checkpoint()     # before the dataset: a run without one fails at once
    try:
        source, model = build(cfg, data_dir or run.data_dir())
        model.load_state_arrays(arrays, str(ckpt), optimizer=optimizer)
    finally:
        arrays.close()
    return OpenedRun(run, cfg, source, model, ckpt, meta)


def rng_state(rng: np.random.Generator) -> str:
    return json.dumps(rng.bit_generator.state)
