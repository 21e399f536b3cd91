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
