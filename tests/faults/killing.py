"""kill -9 at random moments: chains of a training run killed and resumed, and of frame-cache builds
killed and restarted, with the invariants checked after every kill.

A training chain starts ``train`` and then, after every kill, ``train --resume`` on the same run.
Each kill comes at a random moment after the start (``random``), as soon as a checkpoint's
temporary file appears (``checkpoint``: inside a checkpoint write), or very early (``startup``:
while the dataset, its cache and the model are being set up). After each kill:

* every visible file of the run reads back (config.yaml, run.json, JSON reports, every checkpoint);
* the newest checkpoint is at most one checkpoint interval behind the last logged step;

and at the end a resume runs to completion, taking over the dead writer's lock with a warning, and
no temporary file is left in the run or the cache folder.

A cache chain runs ``inspect --build-cache`` on a dataset of PNG frames (a slow decode) and kills
it at a random moment; after each kill the cache is either absent or complete (the manifest's data
file has its full size); a last build completes and leaves no temporary.

Example::

    chain = TrainingChain(data, run_dir, config, seed=0)
    records = chain.run(kills=6)
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TMP = re.compile(r"^\..*\.tmp")
CLI = [sys.executable, "-m", "taichi_syncnerf.cli.main"]


def temporaries(*folders: Path) -> list[Path]:
    """Temporary files of atomic writes (``.name....tmp...``) in ``folders``."""
    out = []
    for d in folders:
        if Path(d).is_dir():
            out += [p for p in Path(d).iterdir() if TMP.match(p.name)]
    return out


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@dataclass
class Kill:
    """One kill: what it aimed at, when, and what it found."""

    chain: str
    index: int
    aim: str
    after_s: float
    during: str            # where the process was: "checkpoint write", "cache build", "training", "finished"...
    newest_step: int | None = None
    logged_step: int | None = None
    checkpoints: int = 0
    notes: list = field(default_factory=list)

    def row(self) -> dict:
        return {"chain": self.chain, "kill": self.index, "aim": self.aim, "after_s": round(self.after_s, 2),
                "during": self.during, "newest_checkpoint": self.newest_step, "last_logged": self.logged_step}


def _env(cache_dir: Path) -> dict:
    env = dict(os.environ)
    env["TAICHI_SYNCNERF_CACHE_DIR"] = str(cache_dir)
    env.setdefault("TI_SKIP_VERSION_CHECK", "ON")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def check_run(run: Path) -> tuple[int | None, int | None, int]:
    """Check that every visible file of ``run`` reads back; return (newest checkpoint step, last
    logged step, number of checkpoints)."""
    import yaml

    from taichi_syncnerf.checkpoint import load_checkpoint

    if not run.exists():
        return None, None, 0
    for name in ("run.json", "offsets.json", "metrics.json"):
        if (run / name).exists():
            json.loads((run / name).read_text())
    if (run / "config.yaml").exists():
        assert isinstance(yaml.safe_load((run / "config.yaml").read_text()), dict)
    ckpts = sorted((run / "checkpoints").glob("step-*.npz")) if (run / "checkpoints").is_dir() else []
    steps = []
    for p in ckpts:
        meta, _ = load_checkpoint(p)            # raises if a checkpoint is half-written
        steps.append(int(meta["step"]))
    logged = None
    if (run / "log.jsonl").exists():
        recs = []
        for line in (run / "log.jsonl").read_text().splitlines():
            try:
                recs.append(json.loads(line))
            except json.JSONDecodeError:
                pass                            # a line cut by the kill: the reader skips it
        logged = max((r.get("step", 0) for r in recs), default=None)
    return (max(steps) if steps else None), logged, len(ckpts)


class TrainingChain:
    """A training run killed ``kills`` times and resumed after each kill (see the module docstring)."""

    def __init__(self, data: Path, run: Path, config: Path, cache_dir: Path, seed: int, name: str = "train",
                 checkpoint_every: int = 3, threads: int = 1):
        self.data, self.run_dir, self.config = Path(data), Path(run), Path(config)
        self.cache_dir = Path(cache_dir)
        self.rng = random.Random(seed)
        self.name = name
        self.every = checkpoint_every
        self.threads = threads
        self.kills: list[Kill] = []
        self.final_stderr = ""

    def _cmd(self, resume: bool) -> list[str]:
        rt = ["--arch", "cpu", "--threads", str(self.threads), "--precision", "f64", "--quiet", "--no-eval"]
        if resume:
            return CLI + ["train", str(self.config), "--out", str(self.run_dir), "--resume", *rt]
        return CLI + ["train", str(self.config), "--data", str(self.data), "--out", str(self.run_dir), *rt]

    def _started(self) -> bool:
        return (self.run_dir / "config.yaml").exists() and (self.run_dir / "run.json").exists()

    def _folders(self) -> list[Path]:
        return [self.run_dir, self.run_dir / "checkpoints", *[d for d in self.cache_dir.glob("*") if d.is_dir()]]

    def _state(self, before: set) -> str:
        new = [p for p in temporaries(*self._folders()) if p not in before]
        if any(p.parent.name == "checkpoints" for p in new):
            return "checkpoint write"
        if any(p.parent.parent == self.cache_dir for p in new):
            return "cache build"
        log = self.run_dir / "log.jsonl"
        if log.exists() and log.stat().st_mtime_ns > self._t_start:
            return "training"
        return "startup"

    def _wait_and_kill(self, proc, aim: str, before: set) -> tuple[float, str]:
        t0 = time.perf_counter()
        if aim == "checkpoint":                 # inside the n-th checkpoint write of this process
            deadline, nth, seen = t0 + 60.0, self.rng.randint(1, 3), set()
            ck = self.run_dir / "checkpoints"
            while time.perf_counter() < deadline and proc.poll() is None:
                seen |= {p for p in temporaries(ck) if p not in before}
                if len(seen) >= nth and any(p.exists() for p in seen):
                    break
                time.sleep(0.0005)
        else:
            delay = self.rng.uniform(0.05, 1.5) if aim == "startup" else self.rng.uniform(2.0, 5.0)
            while time.perf_counter() - t0 < delay and proc.poll() is None:
                time.sleep(0.01)
        during = self._state(before) if proc.poll() is None else "finished"
        _kill(proc)
        return time.perf_counter() - t0, during

    def run(self, kills: int) -> list[Kill]:
        aims = ["startup", "checkpoint", "random", "checkpoint"]
        for i in range(len(self.kills), len(self.kills) + kills):
            aim = aims[i % len(aims)]
            before = set(temporaries(*self._folders()))
            self._t_start = time.time_ns()
            proc = subprocess.Popen(self._cmd(resume=self._started()), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, env=_env(self.cache_dir), cwd=self.run_dir.parent)
            after, during = self._wait_and_kill(proc, aim, before)
            k = Kill(self.name, i + 1, aim, after, during)
            k.newest_step, k.logged_step, k.checkpoints = check_run(self.run_dir)
            if k.logged_step is not None:
                assert k.logged_step - (k.newest_step or 0) <= self.every, (k.row(), "more than one interval lost")
            self.kills.append(k)
        return self.kills

    def finish(self, extra_steps: int = 4) -> tuple[int, str]:
        """Resume to the end (``train.steps`` set to the newest checkpoint + ``extra_steps``);
        returns (exit status, stderr)."""
        import yaml

        newest, _, _ = check_run(self.run_dir)
        if self._started():
            cfg = yaml.safe_load((self.run_dir / "config.yaml").read_text())
            cfg["train"]["steps"] = int(newest or 0) + extra_steps
            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        res = subprocess.run(self._cmd(resume=self._started()), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=_env(self.cache_dir), cwd=self.run_dir.parent, timeout=300)
        self.final_stderr = res.stderr
        return res.returncode, res.stderr


class CheckpointWriterChain:
    """A process that only writes checkpoints (the run folder's own writer: atomic write, then rotation
    to the newest three), killed at random moments: many kills inside writes, without a model's start-up."""

    def __init__(self, run: Path, seed: int, name: str = "checkpoints", mbytes: float = 4.0):
        self.run_dir = Path(run)
        self.rng = random.Random(seed)
        self.name = name
        self.mbytes = mbytes
        self.kills: list[Kill] = []
        self.last_newest = None

    def _cmd(self) -> list[str]:
        code = ("import sys; from tests.faults.killing import write_checkpoints_forever; "
                f"write_checkpoints_forever({str(self.run_dir)!r}, {self.mbytes})")
        return [sys.executable, "-c", code]

    def _env(self) -> dict:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def run(self, kills: int) -> list[Kill]:
        from taichi_syncnerf.run_folder import RunFolder

        ck = self.run_dir / "checkpoints"
        for i in range(len(self.kills), len(self.kills) + kills):
            before = set(temporaries(ck))
            proc = subprocess.Popen(self._cmd(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=self._env())
            t0 = time.perf_counter()
            aim = "write" if i % 2 == 0 else "random"
            if aim == "write":                   # a random moment after a write has begun
                nth, seen = self.rng.randint(1, 4), set()
                while time.perf_counter() - t0 < 20 and proc.poll() is None:
                    seen |= {p for p in temporaries(ck) if p not in before}
                    if len(seen) >= nth and any(p.exists() for p in seen):
                        time.sleep(self.rng.uniform(0.0, 0.002))
                        break
                    time.sleep(0.0002)
            else:
                delay = self.rng.uniform(0.2, 1.0)
                while time.perf_counter() - t0 < delay and proc.poll() is None:
                    time.sleep(0.005)
            writing = any(p not in before for p in temporaries(ck))
            if proc.poll() is not None:
                raise AssertionError(f"the checkpoint writer ended by itself: {proc.stderr.read().decode()}")
            _kill(proc)
            k = Kill(self.name, i + 1, aim, time.perf_counter() - t0, "checkpoint write" if writing else "between writes")
            newest, _, k.checkpoints = check_run(self.run_dir)      # every visible checkpoint loads
            k.newest_step = newest
            if newest is not None:
                path, meta, _ = RunFolder(self.run_dir).load_newest_checkpoint()
                assert int(meta["step"]) == newest
                assert self.last_newest is None or newest >= self.last_newest, (newest, self.last_newest)
                self.last_newest = newest
            self.kills.append(k)
        return self.kills

    def finish(self) -> None:
        """One write by a live process removes the killed writers' temporaries."""
        from taichi_syncnerf.run_folder import RunFolder

        RunFolder(self.run_dir).save_checkpoint((self.last_newest or 0) + 1, {"x/y": np.zeros(4)}, {})


def write_checkpoints_forever(run: str, mbytes: float) -> None:
    """Write checkpoints of ``mbytes`` MB, step after step, into ``run`` (until killed). The first step
    continues after the newest checkpoint there."""
    from taichi_syncnerf.run_folder import RunFolder

    folder = RunFolder(run)
    newest = folder.newest_checkpoint()
    step = int(newest.stem.split("-")[1]) + 1 if newest else 1
    rng = np.random.default_rng(step)
    n = int(mbytes * 2**20 / 8)
    while True:
        folder.save_checkpoint(step, {"field/params": rng.random(n), "offsets/params": np.zeros(3)},
                               {"rng_state": "{}"})
        step += 1


class CacheChain:
    """Frame-cache builds (``inspect --build-cache``) killed at random moments."""

    def __init__(self, data: Path, cache_dir: Path, seed: int, name: str = "cache", max_delay: float = 1.5):
        self.data, self.cache_dir = Path(data), Path(cache_dir)
        self.rng = random.Random(seed)
        self.name = name
        self.max_delay = max_delay
        self.kills: list[Kill] = []

    def _cmd(self) -> list[str]:
        return CLI + ["inspect", str(self.data), "--build-cache"]

    def _temporaries(self) -> list[Path]:
        return temporaries(*[d for d in self.cache_dir.glob("*") if d.is_dir()])

    def _manifests(self) -> list[Path]:
        return sorted(p for d in self.cache_dir.glob("*") if d.is_dir() for p in d.glob("frames_*.json")
                      if not p.name.endswith((".isg.json", ".ist.json", ".std.json")))

    def check(self) -> bool:
        """The cache is absent or complete; True when complete."""
        complete = False
        for m in self._manifests():
            doc = json.loads(m.read_text())
            data = m.with_name(doc["data_file"])
            if data.exists() and data.stat().st_size == int(np.prod(doc["shape"])):
                complete = True
        return complete

    def run(self, kills: int) -> list[Kill]:
        for i in range(len(self.kills), len(self.kills) + kills):
            for m in self._manifests():       # make every start build the cache again
                m.unlink()
            before = set(self._temporaries())

            def new_temporaries(before=before):
                return [p for p in self._temporaries() if p not in before]

            proc = subprocess.Popen(self._cmd(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    env=_env(self.cache_dir))
            aim = "build" if i % 2 == 0 else "random"
            t0 = time.perf_counter()
            if aim == "build":            # inside the build: a random moment after its temporary appears
                while time.perf_counter() - t0 < 20 and proc.poll() is None:
                    if new_temporaries():
                        time.sleep(self.rng.uniform(0.0, 0.05))
                        break
                    time.sleep(0.001)
            else:
                delay = self.rng.uniform(0.3, self.max_delay)
                while time.perf_counter() - t0 < delay and proc.poll() is None:
                    time.sleep(0.005)
            during = "finished" if proc.poll() is not None else (
                "cache build" if new_temporaries() else "startup" if not self._manifests() else "after the build")
            _kill(proc)
            k = Kill(self.name, i + 1, aim, time.perf_counter() - t0, during)
            k.notes.append("complete" if self.check() else "absent")
            self.kills.append(k)
        return self.kills

    def finish(self) -> tuple[int, str]:
        res = subprocess.run(self._cmd(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=_env(self.cache_dir), timeout=300)
        return res.returncode, res.stderr
