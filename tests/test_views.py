"""The image-level model contract (models/base.py View, render_view, render_pixels): a ray family
renders through it exactly the images it rendered from rays before (dataset views, another pose of a
camera, a free camera with NDC rays looking away, pixel subsets, depth and opacity layers)."""
import numpy as np
import pytest

from taichi_syncnerf.config import DEFAULTS, apply_overrides


@pytest.fixture(scope="module")
def kplanes(tmp_path_factory):
    from taichi_syncnerf.data.synthetic import make_scene
    from taichi_syncnerf.models.registry import build_model
    from taichi_syncnerf.rays import RaySource

    scene = tmp_path_factory.mktemp("views") / "scene"
    make_scene(scene, layout="n3dv", cameras=3, frames=6, size=(24, 16), offset_sigma=1.0, seed=1, progress=False)
    cfg = apply_overrides(DEFAULTS, [
        "kplanes.features=4", "kplanes.space_res=[8]", "kplanes.time_res=3", "kplanes.density_hidden=8",
        "kplanes.geo_features=3", "kplanes.color_hidden=[8]", "kplanes.sh_degree=2", "kplanes.n_samples=6",
        "kplanes.proposal.samples=[8]", "kplanes.proposal.features=2", "kplanes.proposal.space_res=[8]",
        "kplanes.proposal.time_res=3", "kplanes.proposal.hidden=4", "train.batch_rays=100", "testoptim.batch_rays=100"])
    source = RaySource.open(scene, cfg, progress=False)
    model = build_model(cfg, source)
    rng = np.random.default_rng(0)
    enc = model.field.encoder
    enc.params.from_numpy(rng.uniform(0.2, 1.5, enc.n_params))       # an image that changes with time
    model.offsets.params.from_numpy(np.array([0.0, 0.1, -0.2]))
    return source, model


def test_dataset_views_render_as_their_rays(kplanes):
    from taichi_syncnerf.evaluate import render_image, render_view

    source, model = kplanes
    for cam, frame in ((0, 0), (1, 3), (2, 5)):
        view = source.view(cam, frame)
        assert (view.width, view.height, view.cam) == (source.width, source.height, cam)
        np.testing.assert_array_equal(view.c2w, source.ds.c2w[cam])
        assert view.time == pytest.approx(float(source.ds.time_of_frame(frame)))
        img = render_view(model, view)
        np.testing.assert_array_equal(img, render_image(model, source.image_rays(cam, frame), source.height,
                                                        source.width))
        x, y = np.array([0, 5, 23, 7]), np.array([0, 9, 15, 3])
        np.testing.assert_array_equal(model.render_pixels(view, x, y),
                                      model.render(source.pixel_rays(cam, frame, x, y)))
        np.testing.assert_array_equal(model.render_pixels(view, x, y), img[y, x])
    assert np.ptp(img) > 0.01


def test_another_pose_and_a_free_camera_render_as_their_rays(kplanes):
    from taichi_syncnerf.data.cameras import Intrinsics, look_at
    from taichi_syncnerf.evaluate import render_image
    from taichi_syncnerf.viewer.camera import view_rays

    source, model = kplanes
    pose = source.ds.render_path(4)[1]
    view = source.view(1, 2.5, pose)
    np.testing.assert_array_equal(model.render_view(view), render_image(model, source.image_rays(1, 2.5, pose),
                                                                        source.height, source.width))
    intr = Intrinsics.from_fov(2.6, 20, 12)            # looking sideways: some NDC rays look away
    centre = source.ds.c2w[2][:, 3]
    c2w = look_at(centre, centre + np.array([1.0, 0.0, -0.3]), np.array([0.0, 1.0, 0.0]))
    offsets = model.offsets.frames()
    view = source.pose_view(c2w, intr, 3.0, 2, offsets)
    assert view.time == pytest.approx(float(source.ds.time_of_frame(3.0 - offsets[2])))
    rays, valid = view_rays(source, c2w, intr, 3.0, 2, offsets)
    assert not valid.all()
    expected = (model.render(rays) * valid[:, None]).reshape(12, 20, 3)
    out = model.render_view_layers(view, layers=True)
    np.testing.assert_array_equal(out["rgb"], expected)
    assert out["depth"].shape == (12, 20) and np.all(out["opacity"][~valid.reshape(12, 20)] == 0)
    assert model.render_view_layers(view, cancel=lambda: True) is None
