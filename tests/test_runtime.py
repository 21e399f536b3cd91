"""runtime: the backend in use, and one line saying why when it is not the one asked for.

Each case starts its own process: the test session's Taichi runtime (CPU, f64) must stay as it is.
"""
import os
import subprocess
import sys

import pytest

from taichi_syncnerf import runtime

PROBE = """
import sys
from taichi_syncnerf import runtime
runtime.cuda_available = lambda: {cuda_found}
from taichi_syncnerf.cli.common import init_runtime
info = init_runtime("{arch}", 1, "f32")
print("ARCH", info.arch, info.requested)
"""


def probe(arch, cuda_found):
    env = dict(os.environ, TI_SKIP_VERSION_CHECK="ON")
    proc = subprocess.run([sys.executable, "-c", PROBE.format(arch=arch, cuda_found=cuda_found)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    arch_line = [ln for ln in proc.stdout.splitlines() if ln.startswith("ARCH")][-1].split()
    ours = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning:")]
    return arch_line[1], arch_line[2], ours


def test_fallback_note_wording():
    assert runtime.fallback_note("cpu", "cpu", "cpu") is None
    assert runtime.fallback_note("auto", "cuda", "cuda") is None
    note = runtime.fallback_note("auto", "cuda", "cpu")
    assert "auto" in note and "NVIDIA driver" in note and note.endswith("running on cpu")
    assert "--arch vulkan" in runtime.fallback_note("vulkan", "vulkan", "cpu")


@pytest.mark.skipif(runtime.cuda_available(), reason="a GPU is present: CUDA would start")
def test_auto_with_a_driver_that_does_not_start_says_so_in_one_line():
    # An NVIDIA driver is "found" but CUDA cannot start here: auto falls back to the CPU, loudly.
    actual, requested, lines = probe("auto", True)
    assert (actual, requested) == ("cpu", "cuda")
    assert len(lines) == 1 and "could not start cuda; running on cpu" in lines[0], lines


def test_auto_without_a_driver_runs_on_the_cpu_quietly():
    actual, requested, lines = probe("auto", False)
    assert (actual, requested, lines) == ("cpu", "cpu", [])


def test_cached_source_positions_are_taichis_text(monkeypatch):
    """The cached source-position text equals what Taichi builds, for every node of a kernel whose
    ti.func is inlined twice and whose static loop repeats its body (a key that left out where the
    node is would return another node's text)."""
    import taichi as ti
    from taichi.lang.ast.ast_transformer_utils import ASTTransformerContext

    cached = ASTTransformerContext.get_pos_info
    assert cached._syncnerf_cached
    calls = []

    def checked(self, node):
        got = cached(self, node)
        calls.append(got == cached.__wrapped__(self, node))
        return got

    monkeypatch.setattr(ASTTransformerContext, "get_pos_info", checked)

    @ti.func
    def twice(v):
        return v * 2.0 + 1.0

    @ti.kernel
    def k(out: ti.types.ndarray()):
        acc = 0.0
        for j in ti.static(range(3)):
            acc += twice(float(j))
        out[0] = twice(acc)

    import numpy as np

    out = np.zeros(1)
    k(out)
    assert out[0] == 2.0 * (1.0 + 3.0 + 5.0) + 1.0
    assert len(calls) > 10 and all(calls)


def test_compile_error_still_names_the_line():
    """Source positions in Taichi's compile errors survive the cache."""
    import taichi as ti

    @ti.kernel
    def broken() -> ti.i32:
        return no_such_name  # noqa: F821

    with pytest.raises(Exception) as err:
        broken()
    assert "test_runtime.py" in str(err.value) and "no_such_name" in str(err.value)


def test_kernel_cache_holds_a_gigabyte(taichi_runtime):
    """The offline cache may grow to CACHE_MAX_BYTES (Taichi's default, 100 MB, is smaller than the
    project's kernels, and a kernel pushed out is compiled again at the next start)."""
    import taichi as ti

    assert taichi_runtime.cache_dir is not None
    assert ti.lang.impl.current_cfg().offline_cache_max_size_of_files == runtime.CACHE_MAX_BYTES >= 1 << 30
