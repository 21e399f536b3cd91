import os

import numpy as np
import pytest

os.environ.setdefault("TI_SKIP_VERSION_CHECK", "ON")


@pytest.fixture(scope="session", autouse=True)
def taichi_runtime():
    """Initialise Taichi once for the whole suite: CPU, float64, 2 threads."""
    from taichi_syncnerf import runtime

    return runtime.init(arch="cpu", threads=2, precision="f64")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
