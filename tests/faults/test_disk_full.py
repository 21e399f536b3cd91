"""A full disk or a file size limit during a write: one line naming the file, exit 2, the previous file
untouched and no temporary left; temporaries of killed writers are removed by the next write."""
import errno
import os
import resource
import subprocess
import sys

import numpy as np
import pytest

from taichi_syncnerf.errors import UserError
from taichi_syncnerf.io_utils import (atomic_path, remove_stale_temporaries, temporary_prefix, write_json_atomic,
                                      write_text_atomic)
from tests.faults.builders import TAICHI_LOG
from tests.faults.killing import temporaries


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "no space left on the device"),
                                         (errno.EDQUOT, "disk quota exceeded"),
                                         (errno.EFBIG, "file too large")])
def test_a_full_disk_is_one_line_naming_the_file(tmp_path, code, words):
    target = tmp_path / "metrics.json"
    write_json_atomic(target, {"old": 1})
    with pytest.raises(UserError) as e:
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise OSError(code, os.strerror(code))
    assert str(e.value) == f"{target}: cannot write it: {words}" + (
        " (the file system's or the process's file size limit, ulimit -f)" if code == errno.EFBIG else "") + \
        "; the previous metrics.json is unchanged"
    assert target.read_text() == '{\n  "old": 1\n}\n' and temporaries(tmp_path) == []


def test_a_folder_that_cannot_be_written(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="cannot write it"):
        write_text_atomic(tmp_path / "file" / "inside.txt", "y")       # a file where a folder should be


def test_other_errors_inside_the_block_pass_through(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic_path(tmp_path / "a.txt"):
            open(tmp_path / "missing.txt").read()
    assert temporaries(tmp_path) == []


def test_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    mine = tmp_path / f"{temporary_prefix('a.npz')}abcd1234.tmp.npz"
    gone = tmp_path / f"{temporary_prefix('b.npz').replace(f'-{os.getpid()}.', f'-{pid}.')}abcd1234.tmp.npz"
    other_host = tmp_path / f".c.npz.ffffff-{pid}.abcd1234.tmp.npz"
    plain = tmp_path / "notes.tmp.txt"
    staging = tmp_path / f"{temporary_prefix('out').replace(f'-{os.getpid()}.', f'-{pid}.')}abcd1234.tmp"
    for p in (mine, gone, other_host, plain):
        p.write_text("x")
    (staging / ".frames").mkdir(parents=True)           # prepare's staging folder, left by a kill
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted([gone, staging])
    write_text_atomic(tmp_path / "x.txt", "y")           # every atomic write cleans its folder
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, other_host.name, plain.name, "x.txt"])


def test_a_file_size_limit_during_a_cache_build(tmp_path):
    from taichi_syncnerf.data.synthetic import make_scene

    data = tmp_path / "scene"
    make_scene(data, cameras=3, frames=8, size=(32, 24), offset_sigma=1.0, seed=2, progress=False)
    nbytes = 3 * 8 * 24 * 32 * 3

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes // 2, nbytes // 2))

    cmd = [sys.executable, "-m", "taichi_syncnerf.cli.main", "inspect", str(data), "--build-cache"]
    res = subprocess.run(cmd, preexec_fn=limit, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not TAICHI_LOG.match(ln)]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "frames_ds1_f0-8.u8: cannot write it: file too " \
        "large" in lines[0] and "Traceback" not in res.stderr, lines
    cache = data / ".cache"
    assert temporaries(cache) == [] and not (cache / "frames_ds1_f0-8.json").exists()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)          # room again: it builds
    assert res.returncode == 0, res.stderr
    assert (cache / "frames_ds1_f0-8.u8").stat().st_size == nbytes
    np.testing.assert_array_equal(np.fromfile(cache / "frames_ds1_f0-8.u8", np.uint8).size, nbytes)
