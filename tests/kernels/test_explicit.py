"""kernels/explicit.py: forward vs the numpy twin, backward vs the twin and float64 finite differences."""
import numpy as np
import pytest
import taichi as ti

from taichi_syncnerf.kernels import explicit
from taichi_syncnerf.kernels.reference import explicit as ref
from . import finite_diff

D = 5
COUNTS = [3, 0, 4, 1, 2, 0, 3, 2]  # rays 1 and 5 have no samples
N_RAYS = 6                          # rays 6 and 7 have samples but are inactive
R_MAX = len(COUNTS) + 1
EXTRA = 2                           # unused columns beside the decoder's own
H = 1e-4                            # central differences (the map is bilinear: exact up to rounding)
SENTINEL = 7.0


def packed_layout(counts, rng):
    """Ray starts in shuffled ray order with a padding row before each ray: the decoder must not
    assume sorted or gap-free packing. Returns (ray_start, total rows)."""
    order = rng.permutation(len(counts))
    start = np.zeros(len(counts), np.int32)
    row = 0
    for r in order:
        row += 1  # padding row owned by no ray
        start[r] = row
        row += counts[r]
    return start, row + 1


def make_fields(n_ray_rows, n_samples, dim):
    return dict(
        feat=ti.field(float, shape=(n_samples, dim + EXTRA), needs_grad=True),
        basis=ti.field(float, shape=(n_ray_rows, 3 * dim + EXTRA), needs_grad=True),
        out=ti.field(float, shape=(n_samples, 3 + EXTRA), needs_grad=True),
        start=ti.field(ti.i32, shape=n_ray_rows),
        count=ti.field(ti.i32, shape=n_ray_rows),
    )


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(11)
    start, S = packed_layout(COUNTS, rng)
    f = make_fields(R_MAX, S, D)
    f["start"].from_numpy(np.concatenate([start, [0]]).astype(np.int32))
    f["count"].from_numpy(np.array(COUNTS + [0], np.int32))
    feat = rng.normal(size=(S, D + EXTRA))
    basis = rng.normal(size=(R_MAX, 3 * D + EXTRA))
    d_out = rng.normal(size=(S, 3 + EXTRA))
    f["feat"].from_numpy(feat)
    f["basis"].from_numpy(basis)
    f["out"].grad.from_numpy(d_out)
    # Rows of the samples of active rays (the only rows the kernels may touch).
    active = np.zeros(S, bool)
    for r in range(N_RAYS):
        active[start[r]:start[r] + COUNTS[r]] = True
    return dict(f=f, start=start, S=S, feat=feat, basis=basis, d_out=d_out, active=active, rng=rng)


def run_forward(d, feat=None, basis=None):
    f = d["f"]
    if feat is not None:
        f["feat"].from_numpy(feat)
    if basis is not None:
        f["basis"].from_numpy(basis)
    explicit.explicit_color_forward(f["feat"], f["basis"], f["start"], f["count"], f["out"], N_RAYS, D)
    return f["out"].to_numpy()


def test_forward_matches_reference_and_leaves_other_entries(setup):
    d, f = setup, setup["f"]
    f["out"].fill(SENTINEL)
    out = run_forward(d, d["feat"], d["basis"])
    want = ref.explicit_color_forward(d["feat"], d["basis"], d["start"], COUNTS, N_RAYS, D)
    act = d["active"]
    np.testing.assert_allclose(out[act, :3], want[act], rtol=1e-12, atol=1e-13)
    assert np.all(out[~act] == SENTINEL)  # padding rows and samples of inactive rays
    assert np.all(out[:, 3:] == SENTINEL)
    # The reference itself, on one sample written out by hand.
    r = 2
    s = d["start"][r] + 1
    manual = [sum(d["feat"][s, k] * d["basis"][r, c * D + k] for k in range(D)) for c in range(3)]
    np.testing.assert_allclose(want[s], manual, rtol=1e-12)


def run_backward(d, feat_grad_prefill, basis_grad_prefill):
    f = d["f"]
    f["feat"].grad.from_numpy(feat_grad_prefill)
    f["basis"].grad.from_numpy(basis_grad_prefill)
    explicit.explicit_color_backward(f["feat"], f["basis"], f["start"], f["count"], f["out"], N_RAYS, D)
    return f["feat"].grad.to_numpy(), f["basis"].grad.to_numpy()


def test_backward_accumulates_feat_grad_and_overwrites_basis_grad(setup):
    d, rng = setup, setup["rng"]
    d["f"]["feat"].from_numpy(d["feat"])
    d["f"]["basis"].from_numpy(d["basis"])
    pre_f = rng.normal(size=d["feat"].shape)
    pre_b = rng.normal(size=d["basis"].shape)
    g_feat, g_basis = run_backward(d, pre_f, pre_b)
    want_f, want_b = ref.explicit_color_backward(d["feat"], d["basis"], d["start"], COUNTS, d["d_out"],
                                                 N_RAYS, D)
    act = d["active"]
    np.testing.assert_allclose(g_feat[act, :D], pre_f[act, :D] + want_f[act], rtol=1e-12, atol=1e-13)
    assert np.all(g_feat[~act] == pre_f[~act]) and np.all(g_feat[:, D:] == pre_f[:, D:])
    np.testing.assert_allclose(g_basis[:N_RAYS, :3 * D], want_b, rtol=1e-12, atol=1e-13)
    assert np.all(g_basis[[1, 5], :3 * D] == 0.0)  # zero-sample rays: overwritten with 0
    assert np.all(g_basis[N_RAYS:] == pre_b[N_RAYS:]) and np.all(g_basis[:, 3 * D:] == pre_b[:, 3 * D:])
    np.testing.assert_array_equal(d["f"]["out"].grad.to_numpy(), d["d_out"])  # left as set
    # A second call adds to feat.grad again, rewrites basis.grad with the same values, bit for bit.
    explicit.explicit_color_backward(d["f"]["feat"], d["f"]["basis"], d["f"]["start"], d["f"]["count"],
                                     d["f"]["out"], N_RAYS, D)
    np.testing.assert_allclose(d["f"]["feat"].grad.to_numpy()[act, :D], pre_f[act, :D] + 2 * want_f[act],
                               rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(d["f"]["basis"].grad.to_numpy(), g_basis)



def test_backward_matches_finite_differences(setup):
    """Differentiate the Taichi forward itself: L = sum(d_out * out) over the active samples."""
    d = setup
    act = d["active"]

    def loss(feat, basis):
        return float(np.sum(d["d_out"][act, :3] * run_forward(d, feat, basis)[act, :3]))

    feat_mask = np.zeros(d["feat"].shape, bool)
    feat_mask[:, :D] = True  # every sample row: inactive rows must come out 0
    basis_mask = np.zeros(d["basis"].shape, bool)
    basis_mask[:N_RAYS + 1, :3 * D] = True  # ray 6 is inactive: 0
    fd_feat = finite_diff(lambda x: loss(x, d["basis"]), d["feat"], H, feat_mask)
    fd_basis = finite_diff(lambda x: loss(d["feat"], x), d["basis"], H, basis_mask)
    assert np.all(fd_feat[~act] == 0.0) and np.all(fd_basis[N_RAYS:] == 0.0)

    run_forward(d, d["feat"], d["basis"])  # restore the unperturbed inputs
    g_feat, g_basis = run_backward(d, np.zeros_like(d["feat"]), np.zeros_like(d["basis"]))
    np.testing.assert_allclose(g_feat[:, :D], fd_feat[:, :D], rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(g_basis[:N_RAYS, :3 * D], fd_basis[:N_RAYS, :3 * D], rtol=1e-8, atol=1e-9)


def test_many_rays_wide_features_match_reference():
    """dim = 128 (the widest planned) with a few hundred rays, so both threads share the work."""
    rng = np.random.default_rng(3)
    dim, n_rays = 128, 300
    counts = rng.integers(0, 7, size=n_rays)
    start, S = packed_layout(counts, rng)
    f = make_fields(n_rays, S, dim)
    f["start"].from_numpy(start)
    f["count"].from_numpy(counts.astype(np.int32))
    feat = rng.normal(size=(S, dim + EXTRA))
    basis = rng.normal(size=(n_rays, 3 * dim + EXTRA))
    d_out = rng.normal(size=(S, 3 + EXTRA))
    pre_f = rng.normal(size=feat.shape)
    for name, arr in (("feat", feat), ("basis", basis)):
        f[name].from_numpy(arr)
    f["out"].grad.from_numpy(d_out)
    f["feat"].grad.from_numpy(pre_f)
    args = (f["feat"], f["basis"], f["start"], f["count"], f["out"], n_rays, dim)
    explicit.explicit_color_forward(*args)
    explicit.explicit_color_backward(*args)
    act = np.zeros(S, bool)
    for r in range(n_rays):
        act[start[r]:start[r] + counts[r]] = True
    want = ref.explicit_color_forward(feat, basis, start, counts, n_rays, dim)
    want_f, want_b = ref.explicit_color_backward(feat, basis, start, counts, d_out, n_rays, dim)
    np.testing.assert_allclose(f["out"].to_numpy()[act, :3], want[act], rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(f["feat"].grad.to_numpy()[act, :dim], pre_f[act, :dim] + want_f[act],
                               rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(f["basis"].grad.to_numpy()[:, :3 * dim], want_b, rtol=1e-11, atol=1e-12)


def test_bad_arguments_raise(setup):
    f = setup["f"]
    args = [f["feat"], f["basis"], f["start"], f["count"], f["out"]]
    with pytest.raises(ValueError, match="dim must be"):
        explicit.explicit_color_forward(*args, N_RAYS, 0)
    with pytest.raises(ValueError, match="n_rays must be"):
        explicit.explicit_color_forward(*args, -1, D)
    with pytest.raises(ValueError, match="basis: expected"):
        explicit.explicit_color_forward(*args, N_RAYS, D + 1)  # 3 * (D + 1) > 3 * D + EXTRA
    with pytest.raises(ValueError, match="fewer than n_rays"):
        explicit.explicit_color_forward(*args, R_MAX + 1, D)
    floats = ti.field(float, shape=R_MAX)
    with pytest.raises(ValueError, match="ray_start: expected an int32"):
        explicit.explicit_color_forward(f["feat"], f["basis"], floats, f["count"], f["out"], N_RAYS, D)
    no_grad = ti.field(float, shape=(4, 3))
    explicit.explicit_color_forward(f["feat"], f["basis"], f["start"], f["count"], no_grad, 0, D)
    with pytest.raises(ValueError, match="out: the field needs needs_grad"):
        explicit.explicit_color_backward(f["feat"], f["basis"], f["start"], f["count"], no_grad, 0, D)
