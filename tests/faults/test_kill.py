"""kill -9 at random moments (20 kills in all): of a training run, of the run folder's checkpoint
writer and of frame-cache builds. After each kill every visible file reads back and at most one
checkpoint interval is lost; then the run resumes to its end (taking over the dead writer's lock
with a warning), the cache builds, and no temporary file remains. See :mod:`tests.faults.killing`."""
import threading

import pytest

from tests.faults.builders import TAICHI_LOG, config_file
from tests.faults.killing import CacheChain, CheckpointWriterChain, TrainingChain, temporaries

TRAIN_KILLS, WRITER_KILLS, CACHE_KILLS, EVERY = 4, 8, 8, 3


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from taichi_syncnerf.data.synthetic import make_scene

    root = tmp_path_factory.mktemp("kill")
    make_scene(root / "scene", cameras=3, frames=8, size=(32, 24), offset_sigma=1.0, seed=2, progress=False)
    make_scene(root / "png", layout="blender", cameras=3, frames=16, size=(64, 48), offset_sigma=1.0, seed=2,
               png=True, progress=False)
    for p in (root / "png").glob("*.mp4"):
        p.unlink()
    return root


def run_chains(scenes, tmp_path):
    """The three chains in parallel threads (each drives its own processes)."""
    cfg = config_file(tmp_path, ["train.steps=2000", f"train.checkpoint_every={EVERY}", "train.log_every=1"])
    train = TrainingChain(scenes / "scene", tmp_path / "run", cfg, tmp_path / "cache-train", seed=1,
                          checkpoint_every=EVERY)
    writer = CheckpointWriterChain(tmp_path / "writer", seed=2)
    cache = CacheChain(scenes / "png", tmp_path / "cache-png", seed=3)
    results, errors = {}, []

    def work(name, chain, kills):
        try:
            chain.run(kills)
            results[name] = chain.finish()
        except BaseException as e:               # re-raised by the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=a) for a in
               (("train", train, TRAIN_KILLS), ("writer", writer, WRITER_KILLS), ("cache", cache, CACHE_KILLS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return train, writer, cache, results


def test_kill_9_at_random_moments(scenes, tmp_path):
    train, writer, cache, results = run_chains(scenes, tmp_path)
    kills = train.kills + writer.kills + cache.kills
    assert len(kills) >= 20

    rc, err = results["train"]
    assert rc == 0, err
    lines = [ln for ln in err.splitlines() if ln.strip() and not TAICHI_LOG.match(ln)]
    assert all(ln.startswith("warning: ") for ln in lines), lines
    assert any("taking over the lock" in ln for ln in lines), lines
    assert any(k.during == "checkpoint write" for k in train.kills), [k.row() for k in train.kills]
    folders = [d for d in train.cache_dir.glob("*") if d.is_dir()]
    assert temporaries(train.run_dir, train.run_dir / "checkpoints", *folders) == []

    assert sum(k.during == "checkpoint write" for k in writer.kills) >= WRITER_KILLS // 2, \
        [k.row() for k in writer.kills]
    assert temporaries(writer.run_dir / "checkpoints") == []

    rc, err = results["cache"]
    assert rc == 0, err
    assert cache.check()
    assert any(k.during == "cache build" for k in cache.kills), [k.row() for k in cache.kills]
    assert temporaries(*[d for d in cache.cache_dir.glob("*") if d.is_dir()]) == []
