"""kernels/splat.py's render-only kernel (forward(backward=False), pixels of a row blended LANES at
a time) gives the images of the kernel training uses: the same operations per pixel, float64."""
import numpy as np
import pytest

from .test_splat import N_MAX, Scene, make_scene

OUTPUTS = ("colour", "alpha", "depth", "final_t", "n_contrib")


@pytest.mark.parametrize("size,t_min", [((40, 24), 1e-4), ((37, 21), 1e-4), ((37, 21), 0.4)])
def test_render_only_kernel_equals_the_training_kernel(size, t_min):
    """Partial lane groups at the right edge (37 = 2 x 16 + 5) and, with t_min 0.4, pixels that
    stop early while other lanes of their row go on."""
    from taichi_syncnerf.kernels import splat

    w, h = size
    sc = make_scene()
    cam = sc["cam"]
    cam = splat.Camera(cam.fx, cam.fy, cam.cx * w / 40, cam.cy * h / 24, w, h, cam.R, cam.t)
    fields = Scene(sc)
    ras = splat.Rasterizer(N_MAX, 40, 24, sh_degree=3)
    out = {}
    for backward in (True, False):
        ras.colour.fill(-1.0)
        fields.forward(ras, cam=cam, backward=backward, t_min=t_min)
        out[backward] = {k: getattr(ras, k).to_numpy()[:h, :w] for k in OUTPUTS}
    assert out[True]["n_contrib"].max() > 3 and (out[True]["final_t"] < 0.5).any()
    if t_min > 0.1:   # stopped pixels beside pixels that blend on
        stopped = out[True]["final_t"] < 0.5
        assert stopped.any() and (~stopped & (out[True]["n_contrib"] > 0)).any()
    for k in OUTPUTS:
        np.testing.assert_allclose(out[False][k], out[True][k], rtol=1e-13, atol=1e-15, err_msg=k)
    with pytest.raises(RuntimeError, match="backward=True"):
        ras.backward(d_colour=np.ones((h, w, 3)))
