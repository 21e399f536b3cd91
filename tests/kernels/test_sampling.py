"""kernels/sampling.py against its numpy twin, plus properties (sorting, tiling, distribution)."""
import numpy as np
import pytest
import taichi as ti

from taichi_syncnerf.kernels import sampling
from taichi_syncnerf.kernels.reference import sampling as ref

R_MAX = 256
N_COARSE = 32
N_FINE = 40
TOL = dict(rtol=1e-12, atol=1e-12)  # float64 round-off (fast-math may reorder a multiply-add)


def put(field, arr):
    """Write arr into the leading rows of field (the rest zero)."""
    full = np.zeros(field.shape, dtype=field.to_numpy().dtype)
    full[: len(arr)] = arr
    field.from_numpy(full)


@pytest.fixture(scope="module")
def f():
    class F:
        pass

    f = F()
    f.near = ti.field(float, shape=R_MAX)
    f.far = ti.field(float, shape=R_MAX)
    f.counts = ti.field(ti.i32, shape=R_MAX)
    f.origins = ti.field(float, shape=(R_MAX, 3))
    f.dirs = ti.field(float, shape=(R_MAX, 3))
    f.weights = ti.field(float, shape=R_MAX * N_COARSE)
    f.xyz = ti.field(float, shape=(R_MAX * N_FINE, 4))
    f.coarse = sampling.RaySampler(R_MAX, R_MAX * N_COARSE)
    f.fine = sampling.RaySampler(R_MAX, R_MAX * N_FINE)
    return f


def near_far(rng, R, miss=(1, 4)):
    near = rng.uniform(0.5, 2.0, R)
    far = near + rng.uniform(0.5, 4.0, R)
    for r in miss:
        if r < R:
            far[r] = near[r]  # a ray that missed its box: zero samples
    return near, far


def assert_packed_equal(got, want):
    for k in ("ray_start", "ray_count", "ray_id"):
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    np.testing.assert_allclose(got["t0"], want["t0"], **TOL)
    np.testing.assert_allclose(got["t1"], want["t1"], **TOL)


def check_sorted(p):
    for r in range(len(p["ray_count"])):
        a, c = p["ray_start"][r], p["ray_count"][r]
        t0, t1 = p["t0"][a:a + c], p["t1"][a:a + c]
        assert np.all(t1 >= t0) and np.all(t1[:-1] <= t0[1:])
        assert np.all(p["ray_id"][a:a + c] == r)


@pytest.mark.parametrize("spacing", ["linear", "disparity"])
@pytest.mark.parametrize("jitter", [False, True])
def test_stratified_matches_reference_and_tiles(f, rng, spacing, jitter):
    R, n = 9, 6
    near, far = near_far(rng, R)
    put(f.near, near)
    put(f.far, far)
    total = f.coarse.stratified(f.near, f.far, R, n, spacing=spacing, jitter=jitter, seed=77)
    got = f.coarse.to_numpy()
    want = ref.stratified(near, far, n, spacing, jitter, seed=77)
    assert total == want["n_samples"] == (R - 2) * n and f.coarse.n_dropped == 0
    assert_packed_equal(got, want)
    check_sorted(got)
    for r in range(R):
        a, c = got["ray_start"][r], got["ray_count"][r]
        if r in (1, 4):
            assert c == 0
            continue
        assert got["t0"][a] == near[r] and got["t1"][a + c - 1] == far[r]
        np.testing.assert_array_equal(got["t1"][a:a + c - 1], got["t0"][a + 1:a + c])  # contiguous
        g = got["t0"][a:a + c] if spacing == "linear" else 1.0 / got["t0"][a:a + c]
        if not jitter:  # bin edges equally spaced in the spacing coordinate
            np.testing.assert_allclose(np.diff(g), (g[1] - g[0]), rtol=1e-9)


def test_stratified_jitter_statistics(f, rng):
    R, n = R_MAX, 8
    put(f.near, np.full(R, 1.0))
    put(f.far, np.full(R, 3.0))
    f.coarse.stratified(f.near, f.far, R, n, jitter=True, seed=5)
    a = f.coarse.to_numpy()
    inner = a["t0"].reshape(R, n)[:, 1:]  # edges 1..n-1
    offset = (inner - 1.0) / 2.0 * n - np.arange(1, n)  # position within its +-0.5 stratum
    assert offset.min() >= -0.5 and offset.max() < 0.5
    assert abs(offset.mean()) < 0.02 and abs(offset.var() - 1 / 12) < 0.01
    f.coarse.stratified(f.near, f.far, R, n, jitter=True, seed=5)
    np.testing.assert_array_equal(f.coarse.to_numpy()["t0"], a["t0"])  # same seed, same draw
    f.coarse.stratified(f.near, f.far, R, n, jitter=True, seed=6)
    assert not np.array_equal(f.coarse.to_numpy()["t0"], a["t0"])


def test_variable_counts_scan_and_overflow(f, rng):
    R = 50
    near, far = near_far(rng, R)
    counts = rng.integers(0, 9, R).astype(np.int32)
    counts[[0, 7, 8]] = 0
    put(f.near, near)
    put(f.far, far)
    put(f.counts, counts)
    small = sampling.RaySampler(R_MAX, 120)  # smaller than the request: later rays lose samples
    total = small.stratified(f.near, f.far, R, counts=f.counts, spacing="linear")
    want = ref.stratified(near, far, 0, counts=counts, capacity=120)
    assert total == 120 and small.n_dropped == want["n_dropped"] > 0
    assert_packed_equal(small.to_numpy(), want)
    check_sorted(small.to_numpy())
    total = f.coarse.stratified(f.near, f.far, R, counts=f.counts)  # fits: nothing dropped
    want = ref.stratified(near, far, 0, counts=counts)
    assert total == want["n_samples"] and f.coarse.n_dropped == 0
    assert_packed_equal(f.coarse.to_numpy(), want)


@pytest.mark.parametrize("spacing,jitter,blur", [("linear", False, False), ("linear", True, True),
                                                  ("disparity", True, False),
                                                  ("disparity", False, True)])
def test_importance_matches_reference(f, rng, spacing, jitter, blur):
    R, n0, n1 = 11, 12, 9
    near, far = near_far(rng, R, miss=(2, 9))
    put(f.near, near)
    put(f.far, far)
    f.coarse.stratified(f.near, f.far, R, n0, spacing=spacing, jitter=True, seed=3)
    prev = f.coarse.to_numpy()
    w = rng.uniform(0, 1, len(prev["t0"])) ** 4
    w[rng.uniform(size=len(w)) < 0.3] = 0.0
    w[:n0] = 0.0  # a ray with all-zero weights: padding makes it uniform
    put(f.weights, w)
    total = f.fine.importance(f.coarse, f.weights, R, n1, spacing=spacing, jitter=jitter,
                              seed=11, blur=blur)
    got = f.fine.to_numpy()
    want = ref.importance(prev["ray_start"], prev["ray_count"], prev["t0"], prev["t1"], w, n1,
                          spacing, jitter, seed=11, blur=blur)
    assert total == want["n_samples"] == (R - 2) * n1
    assert_packed_equal(got, want)
    check_sorted(got)
    for r in range(R):  # new intervals lie inside the previous level's support
        a, c = got["ray_start"][r], got["ray_count"][r]
        if c:
            assert got["t0"][a] >= near[r] and got["t1"][a + c - 1] <= far[r]


def test_importance_concentrates_where_weights_are(f, rng):
    R, n0, n1 = 128, N_COARSE, N_FINE
    put(f.near, np.full(R, 2.0))
    put(f.far, np.full(R, 6.0))
    f.coarse.stratified(f.near, f.far, R, n0)
    centre = np.arange(n0) + 0.5
    w_ray = np.exp(-0.5 * ((centre - 20.0) / 2.0) ** 2)
    w_ray *= 0.9 / w_ray.sum()  # a bump holding 90 % of the mass
    put(f.weights, np.tile(w_ray, R))
    f.fine.importance(f.coarse, f.weights, R, n1, jitter=True, seed=1)
    p = f.fine.to_numpy()
    edges = np.concatenate([p["t0"].reshape(R, n1), p["t1"].reshape(R, n1)[:, -1:]], axis=1)
    observed = np.bincount(np.minimum(((edges - 2.0) / 4.0 * n0).astype(int), n0 - 1).ravel(),
                           minlength=n0)
    pdf = ref.padded_weights(w_ray)
    pdf /= pdf.sum()
    expected = pdf * edges.size
    chi2 = np.sum((observed - expected) ** 2 / expected)
    assert chi2 < 61.1  # chi-square, 31 degrees of freedom, p = 0.001
    uniform = np.full(n0, edges.size / n0)
    assert np.sum((observed - uniform) ** 2 / uniform) > 1000  # the check has power
    in_bump = (edges > 2.0 + 4.0 * 14 / n0) & (edges < 2.0 + 4.0 * 27 / n0)
    assert in_bump.mean() > 0.8


def test_ray_aabb_matches_reference(f, rng):
    R = 40
    origins = rng.uniform(-3, 3, (R, 3))
    dirs = rng.normal(size=(R, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    origins[0], dirs[0] = [0.0, 0.0, -3.0], [0.0, 0.0, 1.0]  # axis-parallel hit
    origins[1], dirs[1] = [2.0, 0.0, -3.0], [0.0, 0.0, 1.0]  # axis-parallel miss
    origins[2], dirs[2] = [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]  # starts inside
    origins[3], dirs[3] = [0.0, 0.0, 3.0], [0.0, 0.0, 1.0]  # box behind the ray
    put(f.origins, origins)
    put(f.dirs, dirs)
    box = (-1.0, -1.5, -1.2, 1.0, 1.5, 1.2)
    sampling.ray_aabb(f.origins, f.dirs, f.near, f.far, R, box, near_min=0.1, far_max=100.0)
    near, far = f.near.to_numpy()[:R], f.far.to_numpy()[:R]
    want_near, want_far = ref.ray_aabb(origins, dirs, box, 0.1, 100.0)
    np.testing.assert_allclose(near, want_near, **TOL)
    np.testing.assert_allclose(far, want_far, **TOL)
    np.testing.assert_allclose([near[0], far[0]], [1.8, 4.2], **TOL)
    assert near[1] == far[1] == 0.1 and near[3] == far[3] == 0.1
    np.testing.assert_allclose([near[2], far[2]], [0.1, 1.0], **TOL)
    hit = far > near
    assert 5 < hit.sum() < R
    exit_pts = origins[hit] + dirs[hit] * far[hit, None]  # exits lie on the box surface
    lo, hi = np.array(box[:3]), np.array(box[3:])
    assert np.all(exit_pts >= lo - 1e-9) and np.all(exit_pts <= hi + 1e-9)
    assert np.all(np.min(np.minimum(np.abs(exit_pts - lo), np.abs(exit_pts - hi)), axis=1) < 1e-9)


@pytest.mark.parametrize("spacing", ["linear", "disparity"])
def test_normalized_coords_and_positions(f, rng, spacing):
    R, n0, n1 = 6, 7, 5
    near, far = near_far(rng, R, miss=(3,))
    put(f.near, near)
    put(f.far, far)
    origins, dirs = rng.normal(size=(R, 3)), rng.normal(size=(R, 3))
    put(f.origins, origins)
    put(f.dirs, dirs)
    f.coarse.stratified(f.near, f.far, R, n0, spacing=spacing, jitter=True, seed=2)
    put(f.weights, rng.uniform(size=R * n0))
    f.fine.importance(f.coarse, f.weights, R, n1, spacing=spacing, jitter=True, seed=2)
    f.fine.normalized_coords(f.near, f.far, spacing)
    p = f.fine.to_numpy()
    s0, s1 = ref.normalized_coords(p["ray_start"], p["ray_count"], p["t0"], p["t1"], near, far,
                                   spacing)
    S = f.fine.n_samples
    np.testing.assert_allclose(f.fine.s0.to_numpy()[:S], s0, **TOL)
    np.testing.assert_allclose(f.fine.s1.to_numpy()[:S], s1, **TOL)
    assert np.all((0 <= s0) & (s0 <= s1) & (s1 <= 1)) and s1.max() > 0.5
    f.fine.positions(f.origins, f.dirs, f.xyz)
    np.testing.assert_allclose(f.xyz.to_numpy()[:S, :3],
                               ref.positions(p["ray_id"], p["t0"], p["t1"], origins, dirs), **TOL)


def test_bad_arguments_raise(f):
    with pytest.raises(ValueError, match="capacity"):
        f.coarse.stratified(f.near, f.far, R_MAX, N_COARSE + 1)
    with pytest.raises(ValueError, match="spacing"):
        f.coarse.stratified(f.near, f.far, 4, 4, spacing="log")
    with pytest.raises(ValueError, match="different"):
        f.coarse.importance(f.coarse, f.weights, 4, 4)
    with pytest.raises(ValueError, match="aabb"):
        sampling.ray_aabb(f.origins, f.dirs, f.near, f.far, 4, (1, 1, 1, 0, 0, 0))
