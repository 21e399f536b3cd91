"""Every kernel in float32 against its float64 twin (forward and backward).

The test session runs Taichi in float64; these checks need an f32 runtime, so one subprocess
(tests/kernels/f32_checks.py) runs them all once per session and reports each output's error
as JSON; each kernel family is one test here. ``SYNCNERF_F32_ARCH=cuda`` runs them on a GPU and
``SYNCNERF_F32_OUT=FILE`` keeps the JSON (benchmarks/gpu_check.sh does both).

Tolerances: about ten times the errors measured on the CPU (2 threads). f32 carries 24 bits
(unit roundoff 6e-8); sums over thousands of terms (plane and hash-grid texels, MLP weight
gradients, 256-sample rays) lose a few more digits, an implementation error loses them all.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .f32_checks import FAMILIES

TOLERANCE = {
    "adam": 5e-5, "allframes": 2e-4, "explicit": 5e-5, "hashgrid": 2e-3, "losses": 2e-4, "mlp": 2e-4,
    "plane_regularizers": 5e-5, "planes": 1e-3, "points": 2e-5, "ray_losses": 2e-5,
    "render": 3e-4, "sampling": 5e-5, "sh": 2e-4, "variation": 1e-4, "vm": 1e-3,
    # sin/cos of angles up to 2^9 rad: an f32 time carries ~6e-8 of rounding, 3e-5 rad at the top
    # frequency (4e-3 of the floor of rel_err); in frames that is 1e-5 of a frame
    "timefn": 4e-2,
}
# Entry-by-entry errors (down to 1e-6 of the largest entry) of the renderer's density gradient:
# behind a surface the gradients are tiny and only a cancellation-free backward gets them right.
TOLERANCE_OF = {("render", "backward_sigma"): 1e-3, ("render", "backward_sigma_colour_only"): 1e-3,
                ("allframes", "render_backward_sigma"): 2e-3,
                # a logit within f32 rounding of the routing threshold may go either way
                ("variation", "routing_mismatch"): 1e-3}


@pytest.fixture(scope="session")
def f32_errors():
    arch = os.environ.get("SYNCNERF_F32_ARCH", "cpu")
    script = Path(__file__).with_name("f32_checks.py")
    proc = subprocess.run([sys.executable, str(script), "--arch", arch, "--threads", "2"],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if os.environ.get("SYNCNERF_F32_OUT"):  # benchmarks/gpu_check.sh collects the errors
        Path(os.environ["SYNCNERF_F32_OUT"]).write_text(json.dumps(result))
    if arch != "cpu":
        assert result["arch"] == arch, f"asked for {arch}, the checks ran on {result['arch']}"
    return result["families"]


def test_every_family_has_a_tolerance():
    assert set(TOLERANCE) == set(FAMILIES)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_f32_matches_float64_twin(f32_errors, family):
    errors = f32_errors[family]
    assert errors, family
    too_large = {k: v for k, v in errors.items()
                 if not v <= TOLERANCE_OF.get((family, k), TOLERANCE[family])}
    assert not too_large, f"{family}: f32 errors above tolerance: {too_large}"
