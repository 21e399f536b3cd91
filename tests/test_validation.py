"""Full-image validation during training and the temporal-median floor, against numpy."""
from types import SimpleNamespace

import numpy as np
import pytest

from taichi_syncnerf.evaluate import eval_frames, median_floor_psnr, validate, validation_pixels
from taichi_syncnerf.metrics import psnr
from taichi_syncnerf.models.base import SyncModel, View


class FakeSource:
    """Camera c, frame f, pixel (x, y) has colour video[c, f, y, x]; 3 cameras, camera 0 is the test one."""

    def __init__(self, rng, n_frames=7, height=10, width=13):
        self.video = rng.random((3, n_frames, height, width, 3))
        self.n_frames, self.height, self.width = n_frames, height, width
        self.test_index, self.train_indices = 0, np.array([2, 1])

    def pixel_rays(self, cam, frame, x, y):
        n = len(x)
        code = np.stack([np.full(n, cam), np.full(n, frame), y, x], 1).astype(float)
        return {"origins": code, "dirs": np.zeros((n, 3)), "view_dirs": np.zeros((n, 3)),
                "times": np.full(n, float(frame)), "cams": np.full(n, cam, np.int32),
                "rgb": self.video[cam, frame, y, x]}

    def view(self, cam, frame):
        def make_rays(x, y):
            rays = self.pixel_rays(cam, frame, np.asarray(x), np.asarray(y))
            return rays, np.ones(len(x), bool)

        return View(SimpleNamespace(width=self.width, height=self.height), np.eye(4)[:3], float(frame), cam, make_rays)

    def pixel_colours(self, cam, frame, x, y):
        return self.video[cam, frame, y, x]

    def image(self, cam, frame):
        return self.video[cam, frame]

    def median_image(self, cam):
        return np.median(self.video[cam], axis=0)


class BlurModel(SyncModel):
    """Renders the true colour scaled by 0.9 (so PSNR is finite), 5 rays at a time."""

    kind = "blur"
    max_rays = 5

    def __init__(self, source):
        self.source = source

    def render_rays_chunk(self, rays):
        assert len(rays["origins"]) <= self.max_rays
        c, f, y, x = rays["origins"].astype(int).T
        return 0.9 * self.source.video[c, f, y, x]

    train_on = prepare_testoptim = state_arrays = load_state_arrays = current_lrs = None


def test_validation_pixels_cover_the_image_evenly():
    x, y = validation_pixels(10, 13, 4)
    assert sorted(set(x.tolist())) == [2, 6, 10] and sorted(set(y.tolist())) == [2, 6]
    x1, y1 = validation_pixels(10, 13, 1)
    assert len(x1) == 130 and x1.max() == 12 and y1.max() == 9
    x9, y9 = validation_pixels(3, 3, 8)                  # stride larger than the image: one pixel
    assert len(x9) == 1 and 0 <= x9[0] < 3 and 0 <= y9[0] < 3


@pytest.mark.parametrize("stride", [1, 3])
def test_validate_pools_mse_over_frames_and_pixels(rng, stride):
    src = FakeSource(rng)
    out = validate(BlurModel(src), src, n_frames=3, stride=stride)
    x, y = validation_pixels(src.height, src.width, stride)
    frames = eval_frames(src.n_frames, 3)
    assert frames == [0, 3, 6]
    for key, cam in (("val_train_psnr", 2), ("val_test_psnr", 0)):
        err = np.mean([np.mean((0.1 * src.video[cam, f, y, x]) ** 2) for f in frames])
        assert out[key] == pytest.approx(-10 * np.log10(err), abs=1e-9)


def test_median_floor_is_the_median_image_psnr(rng):
    src = FakeSource(rng)
    med = np.median(src.video[1], axis=0)
    expected = np.mean([psnr(med, src.video[1, f]) for f in (1, 4)])
    assert median_floor_psnr(src, 1, [1, 4]) == pytest.approx(expected, abs=1e-9)
