import json

import numpy as np
import pytest

from taichi_syncnerf import FORMAT_VERSION
from taichi_syncnerf.checkpoint import (latest_checkpoint, list_checkpoints, load_checkpoint, require_run,
                                        save_checkpoint)
from taichi_syncnerf.errors import UserError


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
