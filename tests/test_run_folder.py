import json

import numpy as np
import pytest

from taichi_syncnerf import FORMAT_VERSION
from taichi_syncnerf.checkpoint import Prefixed, load_checkpoint, write_checkpoint
from taichi_syncnerf.errors import UserError
from taichi_syncnerf.run_folder import RunFolder, RunLock


def save_checkpoint(run, step, arrays, meta, keep=3):
    return RunFolder(run).save_checkpoint(step, arrays, meta, keep=keep)


def list_checkpoints(run):
    return RunFolder(run).checkpoints()


def latest_checkpoint(run):
    return RunFolder(run).newest_checkpoint()


def require_run(run):
    RunFolder.open(run)
    return RunFolder(run).config_path


def test_round_trip_and_rotation(tmp_path):
    for step in (10, 20, 30, 40):
        save_checkpoint(tmp_path, step, {"field/params": np.arange(5.0) * step, "adam/step": np.array(step)},
                        {"note": "x"}, keep=2)
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["step-00000030.npz", "step-00000040.npz"]
    meta, arrays = load_checkpoint(latest_checkpoint(tmp_path))
    assert meta["step"] == 40 and meta["format_version"] == FORMAT_VERSION and meta["note"] == "x"
    np.testing.assert_array_equal(arrays["field/params"], np.arange(5.0) * 40)
    assert not list((tmp_path / "checkpoints").glob("*.tmp*"))


def test_newer_and_corrupt_checkpoints_are_clear_errors(tmp_path):
    p = save_checkpoint(tmp_path, 1, {"a": np.zeros(2)}, {})
    with np.load(p) as z:
        meta = json.loads(str(z["meta"]))
    meta["format_version"] = FORMAT_VERSION + 1
    np.savez(p, meta=np.array(json.dumps(meta)), a=np.zeros(2))
    with pytest.raises(UserError, match="newer taichi-syncnerf"):
        load_checkpoint(p)
    p.write_bytes(b"garbage")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_checkpoint(p)


def test_checkpoint_entries_are_read_only_when_looked_up(tmp_path):
    import tracemalloc

    p = save_checkpoint(tmp_path, 1, {"adam/g/m": np.arange(5_000_000.0), "params/a": np.arange(3.0)}, {})
    tracemalloc.start()
    try:
        meta, arrays = load_checkpoint(p)
        _, peak_open = tracemalloc.get_traced_memory()
        np.testing.assert_array_equal(arrays["params/a"], np.arange(3.0))
        tracemalloc.reset_peak()
        m = arrays["adam/g/m"]
        _, peak_read = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_open < 10e6 and peak_read >= 40e6            # the 40 MB entry only when it is looked up
    assert m[-1] == 4_999_999.0 and set(arrays) == {"adam/g/m", "params/a"} and meta["step"] == 1
    assert set(Prefixed(arrays, "adam/")) == {"g/m"} and len(Prefixed(arrays, "params/")) == 1
    arrays.close()


def test_checkpoint_writing_holds_one_entry_at_a_time(tmp_path):
    import tracemalloc

    class Lazy(dict):
        def __getitem__(self, k):
            return np.full(2_500_000, float(super().__getitem__(k)))        # 20 MB made on demand

    tracemalloc.start()
    try:
        write_checkpoint(tmp_path / "c.npz", 3, Lazy({f"g/{i}": i for i in range(5)}), {})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 45e6                                          # not the 100 MB of all five
    meta, arrays = load_checkpoint(tmp_path / "c.npz")
    assert meta["step"] == 3 and arrays["g/4"][-1] == 4.0 and len(arrays) == 5


def test_a_damaged_or_unsafe_entry_is_found_when_the_checkpoint_is_opened(tmp_path):
    run = RunFolder(tmp_path)
    run.save_checkpoint(1, {"a": np.full(1000, 1.0)}, {})
    p = run.save_checkpoint(2, {"a": np.full(1000, 2.0)}, {})
    raw = bytearray(p.read_bytes())
    raw[raw.index(np.full(8, 2.0).tobytes()) + 20] ^= 0xFF     # one flipped bit pattern inside the data
    p.write_bytes(bytes(raw))
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_checkpoint(p)
    said = []
    path, meta, arrays = run.load_newest_checkpoint(warn=said.append)
    assert meta["step"] == 1 and arrays["a"][0] == 1.0 and "step-00000002.npz" in said[0]
    good_meta = json.dumps({"format_version": FORMAT_VERSION, "step": 3})
    np.savez(tmp_path / "objects.npz", meta=np.array(good_meta), a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(UserError, match="objects.npz: entry a holds Python objects"):
        load_checkpoint(tmp_path / "objects.npz")


def test_require_run(tmp_path):
    with pytest.raises(UserError, match="run folder not found"):
        require_run(tmp_path / "nope")
    with pytest.raises(UserError, match="no config.yaml"):
        require_run(tmp_path)
    (tmp_path / "config.yaml").write_text("name: x\n")
    with pytest.raises(UserError, match="no run.json"):
        require_run(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"format_version": FORMAT_VERSION + 5}))
    with pytest.raises(UserError, match="newer"):
        require_run(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"format_version": FORMAT_VERSION}))
    assert require_run(tmp_path) == tmp_path / "config.yaml"


def test_newest_readable_checkpoint_skips_damaged_ones(tmp_path):
    run = RunFolder(tmp_path)
    for step in (10, 20, 30):
        run.save_checkpoint(step, {"a": np.full(3, float(step))}, {})
    newest = run.newest_checkpoint()
    newest.write_bytes(newest.read_bytes()[:40])            # truncated by a crash or a full disk
    said = []
    path, meta, arrays = run.load_newest_checkpoint(warn=said.append)
    assert path.name == "step-00000020.npz" and meta["step"] == 20
    np.testing.assert_array_equal(arrays["a"], np.full(3, 20.0))
    assert len(said) == 1 and "step-00000030.npz" in said[0] and "not a readable checkpoint" in said[0]
    for p in run.checkpoints():
        p.write_bytes(b"garbage")
    with pytest.raises(UserError, match="no readable checkpoint"):
        run.load_newest_checkpoint(warn=said.append)
    for p in run.checkpoints():
        p.unlink()
    with pytest.raises(UserError, match="has no checkpoint"):
        run.load_newest_checkpoint()


def test_update_checkpoint_replaces_only_what_it_is_given(tmp_path):
    run = RunFolder(tmp_path)
    p = run.save_checkpoint(7, {"offsets/params": np.zeros(3), "field/params": np.arange(4.0)}, {"rng_state": "s"})
    run.update_checkpoint(p, {"offsets/params": np.array([0.0, 1.0, 2.0])}, {"testoptim": {"steps": 3}})
    meta, arrays = load_checkpoint(p)
    assert meta["step"] == 7 and meta["rng_state"] == "s" and meta["testoptim"] == {"steps": 3}
    np.testing.assert_array_equal(arrays["offsets/params"], [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(arrays["field/params"], np.arange(4.0))


def test_create_refuses_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / "x").write_text("")
    with pytest.raises(UserError, match="exists and is not empty"):
        RunFolder.require_new(tmp_path)
    RunFolder.require_new(tmp_path / "new")


def test_second_writer_is_refused_and_a_dead_writers_lock_is_taken_over(tmp_path):
    import subprocess
    import sys

    run = RunFolder(tmp_path)
    with run.writing("train"):
        assert run.lock_path.is_file()
        with pytest.raises(UserError, match="another process writes this run"):
            RunLock(run.lock_path, "testoptim").acquire()
    assert not run.lock_path.exists()
    # a writer killed without releasing: its PID is gone
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run.lock_path.write_text(json.dumps({"pid": dead.pid, "host": __import__("socket").gethostname(),
                                         "start": "1", "command": "train"}))
    with pytest.warns(UserWarning, match="taking over the lock of process"):
        with run.writing("train --resume"):
            assert json.loads(run.lock_path.read_text())["command"] == "train --resume"
    assert not run.lock_path.exists()
    run.lock_path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "command": "train"}))
    with pytest.raises(UserError, match="on host elsewhere"):
        RunLock(run.lock_path, "eval").acquire()
