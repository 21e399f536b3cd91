import math

import pytest

from taichi_syncnerf.data.samplers import SamplingSchedule
from taichi_syncnerf.offsets import TimeOffsets
from taichi_syncnerf.schedule import WarmupCosine, make_lr_schedule


def offsets_frozen(step, freeze_step, start_step=0):
    """The offsets' freeze policy (TimeOffsets.frozen_at) of a synchronising run."""
    return TimeOffsets(2, 10, [True, True], start_step=start_step, freeze_step=freeze_step).frozen_at(step)


def test_warmup_cosine_shape():
    s = WarmupCosine(warmup=10, total=110)
    assert s(0) == pytest.approx(0.1)
    assert s(9) == pytest.approx(1.0)
    assert s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.5)
    assert s(110) == pytest.approx(0.0, abs=1e-12)
    vals = [s(i) for i in range(10, 111)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))


def test_no_warmup_and_constant():
    assert WarmupCosine(0, 100)(0) == pytest.approx(1.0)
    assert make_lr_schedule("constant", 5, 10)(7) == 1.0
    with pytest.raises(ValueError):
        make_lr_schedule("linear", 0, 1)


def test_sampling_schedule_and_freeze():
    s = SamplingSchedule(isg_step=0, ist_step=50)
    assert [s(0), s(49), s(50)] == ["isg", "isg", "ist"]
    assert SamplingSchedule(None, None)(10**6) == "uniform"
    assert SamplingSchedule(5, None)(4) == "uniform"
    assert not offsets_frozen(10, None)
    assert offsets_frozen(10, 10) and not offsets_frozen(9, 10)
    assert offsets_frozen(4, 10, start_step=5) and not offsets_frozen(5, 10, start_step=5)
    assert offsets_frozen(10, 10, start_step=5) and not offsets_frozen(100, None, start_step=5)
    assert math.isfinite(WarmupCosine(3, 3)(5))


def test_no_sync_offsets_are_always_frozen():
    assert TimeOffsets(2, 10, [False, False], freeze_step=None).frozen_at(5)
