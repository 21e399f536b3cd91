"""Parameter losses and activations vs the numpy reference and finite differences."""
import numpy as np
import pytest
import taichi as ti

from taichi_syncnerf.kernels import losses
from taichi_syncnerf.kernels.reference import losses as ref

N, C = 30, 5
H = 1e-6


@pytest.fixture(scope="module")
def f():
    return dict(
        d=ti.field(float, shape=6, needs_grad=True),
        mask=ti.field(ti.i32, shape=6),
        x2=ti.field(float, shape=(N, C), needs_grad=True),
        y2=ti.field(float, shape=(N, 3), needs_grad=True),
        y1=ti.field(float, shape=N, needs_grad=True),
        x1=ti.field(float, shape=N, needs_grad=True),
    )


def test_offset_l1_value_gradient_and_mask(f):
    d0 = np.array([0.3, -0.2, 0.0, 1e-3, -4e-2, 0.7])
    mask = np.array([0, 1, 1, 1, 1, 1])  # camera 0 is the fixed reference camera
    f["d"].from_numpy(d0)
    f["mask"].from_numpy(mask.astype(np.int32))
    f["d"].grad.fill(0.25)
    w = 1e-2
    value = losses.offset_l1(f["d"], w, f["mask"])
    rv, rg = ref.offset_l1(d0, w, mask)
    assert value == pytest.approx(rv, rel=1e-12)
    g = f["d"].grad.to_numpy() - 0.25  # accumulated on top of what was there
    np.testing.assert_allclose(g, rg, rtol=1e-12, atol=0)
    assert g[0] == 0.0 and g[2] == 0.0  # masked out; sub-gradient 0 at 0
    for k in (1, 3, 4, 5):  # finite differences where |d| is differentiable
        plus, minus = d0.copy(), d0.copy()
        plus[k] += H
        minus[k] -= H
        f["d"].from_numpy(plus)
        lp = losses.offset_l1(f["d"], w, f["mask"])
        f["d"].from_numpy(minus)
        lm = losses.offset_l1(f["d"], w, f["mask"])
        assert (lp - lm) / (2 * H) == pytest.approx(g[k], rel=1e-6)
    f["d"].from_numpy(d0)
    f["d"].grad.fill(0.0)
    assert losses.offset_l1(f["d"], w) == pytest.approx(ref.offset_l1(d0, w)[0], rel=1e-12)
    np.testing.assert_allclose(f["d"].grad.to_numpy(), ref.offset_l1(d0, w)[1], rtol=1e-12, atol=0)


def test_l2_penalty_value_gradient(f, rng):
    p0 = rng.normal(size=6)
    f["d"].from_numpy(p0)
    f["d"].grad.fill(0.0)
    value = losses.l2_penalty(f["d"], 0.3)
    rv, rg = ref.l2_penalty(p0, 0.3)
    assert value == pytest.approx(rv, rel=1e-12)
    g = f["d"].grad.to_numpy()
    np.testing.assert_allclose(g, rg, rtol=1e-12)
    plus = p0.copy()
    plus[2] += H
    minus = p0.copy()
    minus[2] -= H
    f["d"].from_numpy(plus)
    lp = losses.l2_penalty(f["d"], 0.3)
    f["d"].from_numpy(minus)
    lm = losses.l2_penalty(f["d"], 0.3)
    assert (lp - lm) / (2 * H) == pytest.approx(g[2], rel=1e-7)


@pytest.mark.parametrize("name", ["trunc_exp", "sigmoid"])
def test_activation_2d_columns(f, rng, name):
    fwd, bwd = getattr(losses, f"{name}_forward"), getattr(losses, f"{name}_backward")
    rfwd, rbwd = getattr(ref, f"{name}_forward"), getattr(ref, f"{name}_backward")
    x0 = rng.uniform(-8.0, 8.0, size=(N, C))
    x0[:3, 1] = (20.0, -40.0, 15.5)  # trunc_exp clamps above 15 (after the -1 bias); sigmoid saturates
    x0[3, 2] = -800.0  # sigmoid must not overflow
    x, y = f["x2"], f["y2"]
    x.from_numpy(x0)
    y.fill(-1.0)
    n, col = N - 2, 1
    fwd(x, y, n, col=col)
    out = y.to_numpy()
    np.testing.assert_allclose(out[:n], rfwd(x0[:n, col:col + 3]), rtol=1e-13, atol=1e-300)
    assert np.all(out[n:] == -1.0)
    dy = rng.normal(size=(N, 3))
    y.grad.from_numpy(dy)
    x.grad.fill(7.0)
    bwd(x, y, n, col=col)
    gx = x.grad.to_numpy()
    np.testing.assert_allclose(gx[:n, col:col + 3], rbwd(x0[:n, col:col + 3], dy[:n]), rtol=1e-13, atol=1e-300)
    untouched = np.ones_like(gx, dtype=bool)
    untouched[:n, col:col + 3] = False
    assert np.all(gx[untouched] == 7.0)
    # Finite differences (elementwise op: perturb everything at once) where no clamp is active.
    x.from_numpy(x0 + H)
    fwd(x, y, n, col=col)
    yp = y.to_numpy()
    x.from_numpy(x0 - H)
    fwd(x, y, n, col=col)
    ym = y.to_numpy()
    fd = dy[:n] * (yp[:n] - ym[:n]) / (2 * H)
    smooth = np.abs(x0[:n, col:col + 3] - 1.0) < 14.0
    np.testing.assert_allclose(gx[:n, col:col + 3][smooth], fd[smooth], rtol=1e-6, atol=1e-9)
    if name == "trunc_exp":
        assert out[0, 0] == pytest.approx(np.exp(15.0)) and out[2, 0] == pytest.approx(np.exp(14.5))
        assert gx[1, 1] == pytest.approx(dy[1, 0] * np.exp(-15.0))  # clamped below in backward only


def test_activation_column_to_vector_and_1d(f, rng):
    x0 = rng.uniform(-5.0, 5.0, size=(N, C))
    f["x2"].from_numpy(x0)
    losses.trunc_exp_forward(f["x2"], f["y1"], N, col=0)  # density from column 0 of an MLP output
    np.testing.assert_allclose(f["y1"].to_numpy(), ref.trunc_exp_forward(x0[:, 0]), rtol=1e-13)
    dy = rng.normal(size=N)
    f["y1"].grad.from_numpy(dy)
    f["x2"].grad.fill(3.0)
    losses.trunc_exp_backward(f["x2"], f["y1"], N, col=0)
    gx = f["x2"].grad.to_numpy()
    np.testing.assert_allclose(gx[:, 0], ref.trunc_exp_backward(x0[:, 0], dy), rtol=1e-13)
    assert np.all(gx[:, 1:] == 3.0)
    f["x1"].from_numpy(x0[:, 2])
    losses.sigmoid_forward(f["x1"], f["y1"], N)
    np.testing.assert_allclose(f["y1"].to_numpy(), ref.sigmoid_forward(x0[:, 2]), rtol=1e-13)
    losses.sigmoid_backward(f["x1"], f["y1"], N)
    np.testing.assert_allclose(f["x1"].grad.to_numpy(), ref.sigmoid_backward(x0[:, 2], dy), rtol=1e-13)


def test_bad_arguments_raise(f):
    with pytest.raises(ValueError, match="do not fit"):
        losses.sigmoid_forward(f["x2"], f["y2"], N, col=3)
    with pytest.raises(ValueError, match="do not fit"):
        losses.sigmoid_forward(f["x1"], f["y1"], N, col=1)
    with pytest.raises(ValueError, match="exceeds"):
        losses.trunc_exp_forward(f["x2"], f["y2"], N + 1)
    with pytest.raises(ValueError, match="1-D"):
        losses.l2_penalty(f["x2"], 1.0)
