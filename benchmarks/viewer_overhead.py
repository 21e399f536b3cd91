"""How much a connected browser viewer slows training: `train` plainly and with `--view PORT`.

On a generated scene (the preset's `data.generate`), runs `train CONFIG -o train.steps=N` alternately
plainly (A) and with `--view PORT` (B), A B A B ... `--pairs` times. In the B runs a headless Chromium
(tests/viewer/cdp.py) opens the page as soon as the viewer serves it (after the run's first
checkpoint) and presses "play", so the viewer renders the moving time all along. Every run is timed to
the line `train` prints when training ends (`--no-eval`); `train --view` then waits for Ctrl-C, which
is sent once it says so. Before the pairs, one short run generates the scene and compiles the
training kernels, and `view --benchmark` compiles the viewer's, so that no run pays for compiling
what the others find in Taichi's kernel cache.

Prints per run the wall time, where the time of the training's cores went (user, nice -- the niced
viewer --, system, idle, and steal: time the hypervisor gave to other machines), the median of the logged `steps_per_s` windows after the first (which
holds the compilation) and the median of the windows logged after the browser started playing (for
an A run: from the step where it started in the B run after it), what the viewer's panel said about its frames,
then the medians of A and B and the slow-down in %. The last line is one JSON object.

    python benchmarks/viewer_overhead.py --out viewer-bench [--config synthetic/sync-kplanes]
        [--steps 600] [--checkpoint-every 50] [--pairs 3] [--threads 1] [--port 8097]
        [--train-cpus 0 --browser-cpus 1 [--control-load]] [-o key=value ...]
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "viewer"))
from cdp import Chromium, find_chromium  # noqa: E402

EXE = [sys.executable, "-m", "taichi_syncnerf.cli.main"]
CLICK_PLAY = ("(() => { const bs = [...document.querySelectorAll('button')];"
              " if (bs.some(b => b.textContent.trim() === 'pause')) return true;"
              " const b = bs.find(b => b.textContent.trim() === 'play'); if (!b) return false; b.click();"
              " return false; })()")   # true once the button reads "pause": playing
OPEN_RESOLUTION = ("(() => { const e = [...document.querySelectorAll('*')].filter(e => e.textContent.trim() === "
                   "'Resolution' && ![...e.children].some(c => c.textContent.trim() === 'Resolution'))[0];"
                   " if (!e) return false; e.click(); return true; })()")  # the folder with the frame line
FRAME_INFO = ("(() => { const t = document.body.innerText.split('\\n').filter(s => s.startsWith('moving ')"
              " || s.startsWith('full ')); return t.length ? t[t.length - 1] : ''; })()")


class Run:
    """One `train` process: its output lines and log.jsonl records, each with the time it appeared."""

    def __init__(self, cmd, rdir: Path, cpus=None):
        self.rdir = rdir
        self.lines, self.records = [], []
        self.t0 = time.monotonic()
        pin = None if cpus is None else (lambda: os.sched_setaffinity(0, cpus))
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True, preexec_fn=pin)
        self.done = False
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._watch_log, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append((time.monotonic() - self.t0, line.rstrip("\n")))

    def _watch_log(self):
        path, seen = self.rdir / "log.jsonl", 0
        while not self.done:
            if path.exists():
                text = path.read_text()
                complete = text[:text.rfind("\n") + 1].splitlines()
                now = time.monotonic() - self.t0
                for line in complete[seen:]:
                    self.records.append((now, json.loads(line)))
                seen = len(complete)
            time.sleep(0.2)

    def line_time(self, prefix: str):
        return next((t for t, s in self.lines if s.startswith(prefix)), None)

    def wait_line(self, prefix: str, timeout: float) -> float:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            t = self.line_time(prefix)
            if t is not None:
                return t
            if self.proc.poll() is not None:
                time.sleep(0.5)            # the reader may still be behind
                t = self.line_time(prefix)
                if t is not None:
                    return t
                sys.exit(f"train exited ({self.proc.returncode}) before {prefix!r}:\n"
                         + "\n".join(s for _, s in self.lines[-20:]))
            time.sleep(0.1)
        self.proc.kill()
        sys.exit(f"no {prefix!r} from train within {timeout:g} s")

    def finish(self):
        self.proc.wait()
        time.sleep(0.5)
        self.done = True


def cpu_seconds(pid: int, children: bool = True) -> float:
    """User + system CPU seconds of a live process (and its live descendants); 0 for one that is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        kids = []
        if children:
            for task in Path(f"/proc/{pid}/task").iterdir():
                kids += [int(k) for k in (task / "children").read_text().split()]
    except (OSError, IndexError, ValueError):
        return 0.0
    return total + sum(cpu_seconds(k) for k in kids)


STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def cpu_times() -> dict:
    """Per CPU number: seconds spent in each of STAT_FIELDS since boot (/proc/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            name, *vals = line.split()
            if name.startswith("cpu") and name != "cpu":
                out[int(name[3:])] = {k: int(v) / tick for k, v in zip(STAT_FIELDS, vals)}
    except OSError:
        pass
    return out


def core_split(before: dict, after: dict, cpus) -> dict:
    """Where the time of ``cpus`` went between two cpu_times() readings, seconds (summed over them):
    user, nice (niced processes: the viewer), system (+irq, softirq), idle (+iowait), steal (taken by
    the hypervisor)."""
    cpus = sorted(cpus if cpus is not None else after)
    d = {k: sum(after.get(c, {}).get(k, 0.0) - before.get(c, {}).get(k, 0.0) for c in cpus) for k in STAT_FIELDS}
    return {"user": round(d["user"], 1), "nice": round(d["nice"], 1),
            "system": round(d["system"] + d["irq"] + d["softirq"], 1), "idle": round(d["idle"] + d["iowait"], 1),
            "steal": round(d["steal"], 1)}


def served(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).read()
        return True
    except OSError:
        return False


def browse(run: Run, url: str, user_dir: Path, state: dict, cpus=None):
    """Open the page once it is served and press "play"; afterwards keep the panel's frame line.
    ``cpus``: the CPUs the browser may use (this thread's affinity, which the browser inherits)."""
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    while run.line_time("trained ") is None and not served(url):
        if run.proc.poll() is not None:
            return
        time.sleep(0.5)
    if run.line_time("trained ") is not None:
        return
    browser = Chromium(user_dir)
    state["browser"] = browser
    browser.open(url)
    end = time.monotonic() + 120
    while time.monotonic() < end and run.line_time("trained ") is None:
        try:
            if browser.evaluate(CLICK_PLAY):
                state["play_s"] = time.monotonic() - run.t0
                browser.evaluate(OPEN_RESOLUTION)
                break
        except (RuntimeError, TimeoutError):
            pass
        time.sleep(0.5)
    while run.line_time("trained ") is None and run.proc.poll() is None:
        try:
            info = browser.evaluate(FRAME_INFO)
            if info:
                state["frames"] = info
        except (RuntimeError, TimeoutError):
            pass
        time.sleep(2.0)


def one_run(args, scene: Path, rdir: Path, view: bool, port: int) -> dict:
    if rdir.exists():
        shutil.rmtree(rdir)
    cmd = EXE + ["train", args.config, "--data", str(scene), "--out", str(rdir), "--no-eval", "--quiet",
                 "--threads", str(args.threads), "-o", f"train.steps={args.steps}",
                 "-o", f"train.checkpoint_every={args.checkpoint_every}"]
    cmd += sum([["-o", o] for o in args.overrides], [])
    if view:
        cmd += ["--view", str(port)]
    load = os.getloadavg()[0]
    stat0 = cpu_times()
    run = Run(cmd, rdir, args.train_cpus)
    state = {}
    browser_thread = None
    spinner = None
    if not view and args.control_load:
        # the B run's browser may keep its cores busy: keep them fully busy here, so that A and B
        # differ by the viewer (a control at least as heavy as the browser)
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                   preexec_fn=lambda: os.sched_setaffinity(0, args.browser_cpus))
    if view:
        profile = rdir.parent / f"chromium-{rdir.name}"      # a fresh profile: no lock left by a stopped run
        if profile.exists():
            shutil.rmtree(profile)
        browser_thread = threading.Thread(target=browse, daemon=True,
                                          args=(run, f"http://127.0.0.1:{port}", profile, state, args.browser_cpus))
        browser_thread.start()
    try:
        wall = run.wait_line("trained ", args.timeout)
    finally:
        if spinner is not None:
            spinner_cpu_s = round(cpu_seconds(spinner.pid, children=False), 1)
            spinner.kill()
            spinner.wait()
    stat1 = cpu_times()
    cpu = {"train_cpu_s": round(cpu_seconds(run.proc.pid, children=False), 1),
           "train_cores": core_split(stat0, stat1, args.train_cpus),
           "other_cores": core_split(stat0, stat1, (set(stat1) - set(args.train_cpus)) if args.train_cpus else [])}
    if spinner is not None:
        cpu["spinner_cpu_s"] = spinner_cpu_s
    if view:
        cpu["viewer_cpu_s"] = round(cpu_seconds(run.proc.pid) - cpu["train_cpu_s"], 1)
        browser_thread.join(10)
        if "browser" in state:
            cpu["browser_cpu_s"] = round(cpu_seconds(state["browser"].proc.pid), 1)
        if "browser" in state:
            state["browser"].close()
        run.wait_line("training is over", 60)
        os.killpg(run.proc.pid, signal.SIGINT)          # Ctrl-C, as a terminal sends it: train and its viewer
        try:
            run.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(run.proc.pid, signal.SIGKILL)
    run.finish()
    records = [(t, r) for t, r in run.records if "steps_per_s" in r]
    play = state.get("play_s")
    return {"mode": "view" if view else "plain", "wall_s": round(wall, 2), "steps": args.steps,
            "windows": [(r["step"], r["steps_per_s"]) for _, r in records[1:]],
            "from_step": None if play is None else next((r["step"] for t, r in records if t > play), None),
            "play_s": None if play is None else round(play, 1),
            "viewer_frames": state.get("frames") if view else None, **cpu, "load_1min": round(load, 2)}


def figures(r: dict, from_step) -> dict:
    """Median steps/s of the windows after the first, and of those after ``from_step``; the windows dropped."""
    windows = r.pop("windows")
    later = [v for step, v in windows if from_step is not None and step > from_step]
    r["from_step"] = from_step
    r["steps_per_s"] = round(float(np.median([v for _, v in windows])), 3) if windows else None
    r["steps_per_s_playing"] = round(float(np.median(later)), 3) if later else None
    return r


def describe(i: int, r: dict) -> str:
    text = (f"{'B' if r['mode'] == 'view' else 'A'}{i + 1} {r['mode']:5s}: wall {r['wall_s']:7.1f} s, "
            f"{r['steps_per_s']} steps/s (windows after the first), "
            f"{r['steps_per_s_playing']} steps/s after step {r['from_step']}")
    text += f"; CPU: training {r['train_cpu_s']} s"
    if r.get("spinner_cpu_s") is not None:
        text += f", control load {r['spinner_cpu_s']} s"
    if r["train_cpu_s"] is not None:
        text += f" (off the CPU {r['wall_s'] - r['train_cpu_s']:.1f} s of the wall time)"
    if r["mode"] == "view":
        text += (f", viewer {r['viewer_cpu_s']} s, browser {r.get('browser_cpu_s')} s; browser playing from "
                 f"{r['play_s']} s; panel: {r['viewer_frames'] or 'no frame line'}")
    text += f"; training's cores: {r['train_cores']}"
    if r["other_cores"]["user"] or r["other_cores"]["idle"]:
        text += f", other cores: {r['other_cores']}"
    return text + f"  (load {r['load_1min']})"


def cpu_list(text: str) -> set:
    """``"0"``, ``"0,1"`` or ``"0-3"`` -> a set of CPU numbers."""
    cpus = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def slowdown(plain, view):
    return None if not plain or not view else round(100.0 * (plain / view - 1.0), 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="viewer-bench")
    ap.add_argument("--config", default="synthetic/sync-kplanes")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--checkpoint-every", type=int, default=50,
                    help="the viewer shows each checkpoint (and waits for the first); the same in A and B runs")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="training threads (the viewer process uses 1)")
    ap.add_argument("--port", type=int, default=8097)
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds one run may take")
    ap.add_argument("--train-cpus", type=cpu_list, default=None, metavar="LIST",
                    help="pin `train` (and the viewer process it starts) to these CPUs, e.g. 0")
    ap.add_argument("--browser-cpus", type=cpu_list, default=None, metavar="LIST",
                    help="pin the browser to these CPUs, e.g. 1: with --train-cpus 0 the browser costs the "
                         "training's CPU nothing, as a browser on another machine")
    ap.add_argument("--control-load", action="store_true",
                    help="in each plain run keep the browser's CPUs (--browser-cpus) busy with a spinning "
                         "process, as the B run's browser keeps them: then A and B differ only by the viewer")
    ap.add_argument("-o", dest="overrides", action="append", default=[])
    ap.add_argument("--record", action="store_true",
                    help="append the JSON line, with date, machine and command, to docs/results/viewer_overhead.jsonl")
    args = ap.parse_args()
    if args.control_load and not args.browser_cpus:
        ap.error("--control-load needs --browser-cpus: the CPUs to keep busy")
    if find_chromium() is None:
        sys.exit("chromium is not installed (Debian: apt-get install chromium)")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    scene = out / "scene"
    warm = out / "warmup"
    if warm.exists():
        shutil.rmtree(warm)
    rt = ["--threads", str(args.threads)]
    print("warm-up: scene, training and viewer kernels ...", flush=True)
    with open(out / "warmup.log", "w") as log:
        for cmd in (["train", args.config, "--data", str(scene), "--out", str(warm), "--no-eval", "--quiet",
                     "-o", "train.steps=2", "-o", "train.checkpoint_every=1"] + rt
                    + sum([["-o", o] for o in args.overrides], []),
                    ["view", str(warm), "--benchmark", "16", "--threads", "1"]):
            if subprocess.run(EXE + cmd, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
                sys.exit(f"warm-up failed: {' '.join(cmd)}; see {out / 'warmup.log'}")
    load_before = [round(v, 2) for v in os.getloadavg()]
    runs = []
    for i in range(args.pairs):
        a = one_run(args, scene, out / f"plain-{i + 1}", view=False, port=args.port + i)
        b = one_run(args, scene, out / f"view-{i + 1}", view=True, port=args.port + i)
        # the A run is measured from the step where the browser of its B run started playing
        for r in (figures(a, b["from_step"]), figures(b, b["from_step"])):
            print(describe(i, r), flush=True)
        print(f"pair {i + 1}: wall slow-down {slowdown(b['wall_s'], a['wall_s'])} %", flush=True)
        runs += [a, b]
    plain = [r for r in runs if r["mode"] == "plain"]
    view = [r for r in runs if r["mode"] == "view"]

    def med(rs, key):
        v = [r[key] for r in rs if r[key] is not None]
        return round(float(np.median(v)), 3) if v else None

    summary = {"name": "viewer_overhead", "config": args.config, "steps": args.steps,
               "checkpoint_every": args.checkpoint_every, "pairs": args.pairs, "threads": args.threads,
               "overrides": args.overrides, "runs": runs,
               "train_cpus": sorted(args.train_cpus) if args.train_cpus else None,
               "browser_cpus": sorted(args.browser_cpus) if args.browser_cpus else None,
               "control_load": args.control_load,
               "plain_wall_s": med(plain, "wall_s"), "view_wall_s": med(view, "wall_s"),
               "plain_steps_per_s": med(plain, "steps_per_s"), "view_steps_per_s": med(view, "steps_per_s"),
               "plain_steps_per_s_playing": med(plain, "steps_per_s_playing"),
               "view_steps_per_s_playing": med(view, "steps_per_s_playing"),
               "load_before": load_before, "load_after": [round(v, 2) for v in os.getloadavg()]}
    summary["wall_slowdown_pct"] = slowdown(summary["view_wall_s"], summary["plain_wall_s"])
    summary["pair_wall_slowdown_pct"] = [slowdown(b["wall_s"], a["wall_s"]) for a, b in zip(plain, view)]
    summary["steps_per_s_slowdown_pct"] = slowdown(summary["plain_steps_per_s"], summary["view_steps_per_s"])
    summary["playing_slowdown_pct"] = slowdown(summary["plain_steps_per_s_playing"],
                                               summary["view_steps_per_s_playing"])
    print(f"median wall: plain {summary['plain_wall_s']} s, view {summary['view_wall_s']} s "
          f"(slow-down {summary['wall_slowdown_pct']} %)")
    print(f"median steps/s: plain {summary['plain_steps_per_s']}, view {summary['view_steps_per_s']} "
          f"(slow-down {summary['steps_per_s_slowdown_pct']} %); while the browser played: plain "
          f"{summary['plain_steps_per_s_playing']}, view {summary['view_steps_per_s_playing']} "
          f"(slow-down {summary['playing_slowdown_pct']} %)")
    print(json.dumps(summary))
    if args.record:
        from report import record
        record(summary)


if __name__ == "__main__":
    main()
