"""MLP kernels vs the float64 reference and finite differences; accumulation, layout, errors."""
import numpy as np
import pytest
import taichi as ti

from taichi_syncnerf.kernels import mlp
from taichi_syncnerf.kernels.reference import mlp as ref

# name: (in_dim, hidden, out_dim, max_batch, n). n is not a multiple of the 32-sample cell;
# "wide" spans three weight-gradient blocks (1024 samples each) and has a 128-wide layer.
SHAPES = {
    "small": (5, [7, 6], 3, 100, 77),
    "wide": (31, [128, 64], 3, 2500, 2345),
    "linear": (4, [], 2, 40, 33),
}
SENTINEL = 7.25


@pytest.fixture(scope="module")
def nets():
    """One MLP and its fields per shape (each distinct field compiles its own kernel instances)."""
    out = {}
    for name, (d_in, hidden, d_out, max_batch, n) in SHAPES.items():
        net = mlp.MLP(d_in, hidden, d_out, max_batch, seed=3)
        inp = ti.field(float, shape=(max_batch, d_in), needs_grad=True)
        res = ti.field(float, shape=(max_batch, d_out), needs_grad=True)
        out[name] = (net, inp, res, n)
    return out


def _load(net, inp, res, rng, n):
    """Random params, inputs and output gradient; every field pre-filled with a sentinel."""
    layers = [(rng.normal(size=w.shape) * 0.5, rng.normal(size=b.shape) * 0.3) for w, b in net.layers()]
    net.set_params(mlp.flatten(layers))
    x = np.full(inp.shape, SENTINEL)
    x[:n] = rng.normal(size=(n, inp.shape[1]))
    g = np.full(res.shape, SENTINEL)
    g[:n] = rng.normal(size=(n, res.shape[1]))
    inp.from_numpy(x)
    inp.grad.fill(SENTINEL)
    res.fill(SENTINEL)
    res.grad.from_numpy(g)
    net.params.grad.fill(0.0)
    return layers, x, g


@pytest.mark.parametrize("name", list(SHAPES))
def test_forward_matches_reference_rows_beyond_n_untouched(nets, name, rng):
    net, inp, res, n = nets[name]
    layers, x, _ = _load(net, inp, res, rng, n)
    net.forward(inp, res, n)
    o = res.to_numpy()
    np.testing.assert_allclose(o[:n], ref.forward(layers, x[:n]), rtol=1e-12, atol=1e-12)
    assert np.all(o[n:] == SENTINEL)


@pytest.mark.parametrize("name", list(SHAPES))
def test_backward_matches_reference(nets, name, rng):
    net, inp, res, n = nets[name]
    layers, x, g = _load(net, inp, res, rng, n)
    net.forward(inp, res, n)
    net.backward(inp, res, n)
    grads, dx = ref.backward(layers, x[:n], g[:n])
    for (dw, db), (rw, rb) in zip(net.unflatten(net.params.grad.to_numpy()), grads):
        np.testing.assert_allclose(dw, rw, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(db, rb, rtol=1e-10, atol=1e-10)
    xg = inp.grad.to_numpy()
    np.testing.assert_allclose(xg[:n], dx, rtol=1e-10, atol=1e-12)
    assert np.all(xg[n:] == SENTINEL)
    assert np.all(res.grad.to_numpy() == g), "backward leaves the output gradient as the caller set it"


@pytest.mark.parametrize("name", ["small", "wide"])
def test_backward_matches_finite_differences(nets, name, rng):
    net, inp, res, n = nets[name]
    _, x, g = _load(net, inp, res, rng, n)
    p0 = net.get_params()
    net.forward(inp, res, n)
    net.backward(inp, res, n)
    p_grad, x_grad = net.params.grad.to_numpy(), inp.grad.to_numpy()

    def loss(p, xin):
        net.set_params(p)
        inp.from_numpy(xin)
        net.forward(inp, res, n)
        return float(np.sum(res.to_numpy()[:n] * g[:n]))

    eps = 1e-6
    idx = rng.choice(net.n_params, size=24, replace=False)
    idx = np.concatenate([idx, [net.n_params - 1]])  # the last output bias
    for i in idx:
        e = np.zeros_like(p0)
        e[i] = eps
        fd = (loss(p0 + e, x) - loss(p0 - e, x)) / (2 * eps)
        assert fd == pytest.approx(p_grad[i], rel=1e-6, abs=1e-7), f"param {i}"
    for r, c in zip(rng.integers(0, n, size=8), rng.integers(0, x.shape[1], size=8)):
        e = np.zeros_like(x)
        e[r, c] = eps
        fd = (loss(p0, x + e) - loss(p0, x - e)) / (2 * eps)
        assert fd == pytest.approx(x_grad[r, c], rel=1e-6, abs=1e-7), f"input ({r}, {c})"


def test_param_grad_accumulates_and_input_grad_switch(nets, rng):
    net, inp, res, n = nets["small"]
    layers, x, g = _load(net, inp, res, rng, n)
    net.forward(inp, res, n)
    net.backward(inp, res, n)
    once = net.params.grad.to_numpy()
    net.backward(inp, res, n, input_grad=False)
    np.testing.assert_allclose(net.params.grad.to_numpy(), 2 * once, rtol=1e-13, atol=1e-14)
    inp.grad.fill(SENTINEL)
    net.backward(inp, res, n, input_grad=False)
    np.testing.assert_allclose(net.params.grad.to_numpy(), 3 * once, rtol=1e-13, atol=1e-14)
    assert np.all(inp.grad.to_numpy() == SENTINEL)
    assert np.all(once != 0.0)


def test_smaller_batch_after_larger_ignores_stale_rows(nets, rng):
    """Buffers keep values of an earlier, larger batch: they must not leak into a smaller one."""
    net, inp, res, n_big = nets["wide"]
    _load(net, inp, res, rng, n_big)
    net.forward(inp, res, n_big)
    net.backward(inp, res, n_big)
    n = 70  # 3 cells, the last one partial; one weight-gradient block
    layers, x, g = _load(net, inp, res, rng, n)
    net.forward(inp, res, n)
    net.backward(inp, res, n)
    grads, dx = ref.backward(layers, x[:n], g[:n])
    for (dw, db), (rw, rb) in zip(net.unflatten(net.params.grad.to_numpy()), grads):
        np.testing.assert_allclose(dw, rw, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(db, rb, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(inp.grad.to_numpy()[:n], dx, rtol=1e-10, atol=1e-12)
    assert np.all(res.to_numpy()[n:] == SENTINEL)


def test_empty_batch_is_a_no_op(nets, rng):
    net, inp, res, _ = nets["small"]
    _load(net, inp, res, rng, 0)
    net.params.grad.fill(1.5)
    net.forward(inp, res, 0)
    net.backward(inp, res, 0)
    assert np.all(res.to_numpy() == SENTINEL) and np.all(inp.grad.to_numpy() == SENTINEL)
    assert np.all(net.params.grad.to_numpy() == 1.5)


def test_init_layout_and_round_trip(nets):
    net, _, _, _ = nets["wide"]
    dims = [31, 128, 64, 3]
    assert net.n_params == sum(o * (i + 1) for i, o in zip(dims[:-1], dims[1:]))
    fresh = mlp.MLP(31, [128, 64], 3, 8, seed=3)
    layers = fresh.layers()
    for (w, b), (rw, rb) in zip(layers, mlp.init_layers(dims, seed=3)):
        np.testing.assert_allclose(w, rw, rtol=1e-6)  # runtime precision may be f32
        np.testing.assert_allclose(b, rb, rtol=1e-6)
    for (w, b), fan_in in zip(layers, dims[:-1]):
        bound = 1.0 / np.sqrt(fan_in)
        assert w.shape[1] == fan_in and np.abs(w).max() <= bound and np.abs(b).max() <= bound
        assert np.abs(w).max() > 0.9 * bound and abs(w.mean()) < 0.1 * bound
    other = mlp.MLP(31, [128, 64], 3, 8, seed=4).get_params()
    assert not np.allclose(other, fresh.get_params())
    # params layout: per layer [W | b] row-major; flatten/unflatten/get/set round trip exactly.
    p = fresh.get_params()
    assert np.array_equal(mlp.flatten(fresh.unflatten(p)), p)
    w0, b0 = layers[0]
    assert p[0] == w0[0, 0] and p[31] == b0[0] and p[32] == w0[1, 0]
    fresh.set_params(p[::-1].copy())
    assert np.array_equal(fresh.get_params(), p[::-1])


def test_bad_arguments_raise(nets):
    net, inp, res, n = nets["small"]
    with pytest.raises(ValueError, match="output_activation"):
        mlp.MLP(2, [4], 1, 8, output_activation="sigmoid")
    with pytest.raises(ValueError, match=">= 1"):
        mlp.MLP(2, [0], 1, 8)
    with pytest.raises(ValueError, match="max_batch"):
        net.forward(inp, res, 101)
    with pytest.raises(ValueError, match="inp"):
        net.forward(res, res, n)
    with pytest.raises(ValueError, match="parameters"):
        net.set_params(np.zeros(net.n_params + 1))
    with pytest.raises(ValueError, match="finite"):
        net.set_params(np.full(net.n_params, np.nan))
    net.forward(inp, res, n)
    with pytest.raises(RuntimeError, match="forward"):
        net.backward(inp, res, n - 1)
    no_grad = ti.field(float, shape=inp.shape)
    with pytest.raises(ValueError, match="needs_grad"):
        net.backward(no_grad, res, n)
