"""ISG / IST / std-map definitions against slow twins, their cache, and importance sampling."""
import json

import numpy as np
import pytest
import torch

from taichi_syncnerf.data import preprocess
from taichi_syncnerf.data.dataset import load_dataset
from taichi_syncnerf.data.sampling import ImportanceSampler


def frames(rng, n=9, h=5, w=6):
    return rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_coarse_frames_block_means(rng):
    x = frames(rng, 2, 9, 10)
    out = preprocess.coarse_frames(x, 4)
    assert out.shape == (2, 2, 2, 3)
    for f in range(2):
        for j in range(2):
            for i in range(2):
                block = x[f, 4 * j:4 * j + 4, 4 * i:4 * i + 4].reshape(-1, 3).astype(float)
                assert np.all(np.abs(out[f, j, i] - block.mean(0)) <= 0.5)  # nearest, ties either way
    assert preprocess.coarse_factor(1) == 4 and preprocess.coarse_factor(2) == 2
    assert preprocess.coarse_factor(3) == 1 and preprocess.coarse_factor(8) == 1


def kplanes_isg(imgs, gamma):
    """Transcription of K-Planes' dynerf_isg_weight for one camera (torch)."""
    t = torch.from_numpy(imgs)
    median = torch.median(t, dim=0).values  # lower median, as torch does
    sq = (t.float() / 255.0 - median[None].float() / 255.0) ** 2
    return ((sq / (sq + gamma ** 2)).sum(-1) / 3.0).numpy()


def kplanes_ist(imgs, alpha=0.1, frame_shift=25):
    """Transcription of K-Planes' dynerf_ist_weight for one camera (torch, zero padding)."""
    x = torch.from_numpy(imgs).float()
    n, h, w, c = x.shape
    best = None
    for s in range(1, frame_shift + 1):
        left = torch.cat([x[s:], torch.zeros(min(s, n), h, w, c)], 0)[:n]
        right = torch.cat([torch.zeros(min(s, n), h, w, c), x[:-s] if s < n else x[:0]], 0)[:n]
        m = torch.maximum((left - x).abs(), (right - x).abs())
        best = m if best is None else torch.maximum(best, m)
    return best.mean(-1).clamp(min=alpha).numpy()


def test_isg_matches_kplanes(rng):
    for n in (8, 9):  # even counts take the lower median
        x = frames(rng, n)
        np.testing.assert_allclose(preprocess.isg_weights(x), kplanes_isg(x, 2e-2), rtol=1e-5, atol=1e-7)
    static = np.repeat(x[:1], 5, axis=0)
    assert np.all(preprocess.isg_weights(static) == 0.0)


def test_ist_zero_padding_matches_kplanes(rng):
    for n, shift in ((30, 25), (12, 4), (3, 25)):
        x = frames(rng, n, 3, 4)
        np.testing.assert_allclose(preprocess.ist_weights(x, frame_shift=shift, zero_pad=True),
                                   kplanes_ist(x, frame_shift=shift), rtol=1e-6)


def test_ist_valid_shifts_only(rng):
    x = frames(rng, 10, 3, 4)
    out = preprocess.ist_weights(x, frame_shift=3)
    ref = np.zeros(out.shape)
    xi = x.astype(int)
    for t in range(10):
        diffs = [np.abs(xi[u] - xi[t]) for u in range(max(0, t - 3), min(10, t + 4)) if u != t]
        ref[t] = np.max(diffs, axis=0).mean(-1)
    np.testing.assert_allclose(out, np.maximum(ref, 0.1), rtol=1e-6)
    static = np.repeat(x[:1], 4, axis=0)
    assert np.all(preprocess.ist_weights(static) == pytest.approx(0.1))


def test_std_map(rng):
    import cv2

    x = frames(rng, 7, 40, 36)
    ref = np.std(x / 255.0, axis=0).mean(-1).astype(np.float32)
    np.testing.assert_allclose(preprocess.std_map(x, blur=1), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(preprocess.std_map(x), cv2.GaussianBlur(ref, (31, 31), 0), atol=1e-5)


def test_importance_sampler_distribution():
    rng = np.random.default_rng(0)
    w = rng.uniform(0, 1, (3, 2, 2, 2)).astype(np.float16)
    w[1, 0, 1, 0] = 0.0
    w[2] = 0.0
    s = ImportanceSampler(w, height=9, width=10, factor=4)  # last row/column blocks are 5 / 6 wide
    prob = s.probability([0, 1])
    assert prob.shape == (2, 2, 9, 10) and prob.sum() == pytest.approx(1.0)
    ratio = float(w[0, 1, 1, 1]) / float(w[0, 1, 0, 0])
    np.testing.assert_allclose(prob[0, 1, 8, 9] / prob[0, 1, 0, 0], ratio)
    n = 300_000
    cam, frame, x, y = s.sample(rng, n, np.array([0, 1]))
    assert cam.min() >= 0 and cam.max() <= 1 and x.max() == 9 and y.max() == 8
    counts = np.zeros(prob.shape)
    np.add.at(counts, (cam, frame, y, x), 1)
    assert counts[1, 0, 4:, 0:4].sum() == 0  # the zero-weight block is never drawn
    expected = prob * n
    z = (counts - expected) / np.sqrt(expected + 1e-9)
    assert np.abs(z[expected > 0]).max() < 5.0
    assert s.sample(rng, 10, np.array([2])) is None  # all-zero weights


def pulse_scene(tmp_path):
    """Lossless 2-camera PNG scene where only a 4x4 patch of camera 1 changes over time."""
    import imageio.v3 as iio

    root = tmp_path / "pulse"
    base = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    for c in range(2):
        (root / "frames_1" / f"cam{c:02d}").mkdir(parents=True)
        for f in range(6):
            img = base.copy()
            if c == 1:
                img[4:8, 0:4] = 40 * f
            iio.imwrite(root / "frames_1" / f"cam{c:02d}" / f"{f:04d}.png", img)
    mats = [np.eye(4).tolist()] * 2
    (root / "transforms.json").write_text(json.dumps(
        {"camera_angle_x": 0.7, "frames": [{"transform_matrix": m} for m in mats]}))
    return root


def test_weighted_batches_hit_only_dynamic_pixels(tmp_path):
    ds = load_dataset(pulse_scene(tmp_path))
    rng = np.random.default_rng(1)
    for kind in ("isg", "ist"):
        b = ds.sample_batch(rng, 2000, weights=kind)
        np.testing.assert_allclose(b.rgb, ds.frames[b.cam, b.frame, b.y, b.x] / 255.0, rtol=1e-6)
        if kind == "isg":  # static pixels equal their median: weight 0
            assert np.all(b.cam == 1) and np.all((b.y >= 4) & (b.x < 4))
        else:  # IST floors static pixels at 0.1 (out of 255) so they stay rare
            assert np.mean((b.y >= 4) & (b.x < 4)) > 0.95
    w = ds.sampler("isg").weights
    assert w.shape == (2, 6, 2, 2) and w.dtype == np.float16  # 4x coarser than 8x8
    uniform_fallback = ds.sample_batch(rng, 500, cameras=[0], weights="isg")
    assert len(np.unique(uniform_fallback.x)) > 4  # camera 0 is static: ISG all zero -> uniform
    std = ds.std_maps()
    assert std.shape == (2, 8, 8) and std[0].max() == 0 and std[1, 6, 1] > std[1, 1, 6]


@pytest.mark.parametrize("floor", [0.25, 0.5])
def test_sampling_floor_reaches_static_pixels(tmp_path, floor):
    """A static-dominated scene (only a 4x4 corner of the training camera moves): with the floor,
    each static pixel of every frame is drawn with probability >= floor / (pixels of all frames)."""
    ds = load_dataset(pulse_scene(tmp_path))
    assert list(ds.train_indices) == [1]
    rng = np.random.default_rng(2)
    n = 40000
    b = ds.sample_batch(rng, n, weights="isg", floor=floor)
    np.testing.assert_allclose(b.rgb, ds.frames[b.cam, b.frame, b.y, b.x] / 255.0, rtol=1e-6)
    assert np.all(b.cam == 1)
    _, nf, h, w, _ = ds.frames.shape
    moving = np.zeros((nf, h, w), bool)
    moving[:, 4:, :4] = True
    n_pixels = moving.size
    share = np.mean(~moving[b.frame, b.y, b.x])
    static_share = floor * np.mean(~moving)          # ISG itself gives static pixels nothing
    assert 0.93 * static_share <= share <= 1.07 * static_share
    counts = np.zeros((nf, h, w))
    np.add.at(counts, (b.frame, b.y, b.x), 1)
    expected = n * floor / n_pixels
    assert counts[~moving].mean() == pytest.approx(expected, rel=0.07)
    assert counts[~moving].min() >= expected / 3       # none is starved (expected ~ 26 or 52)


def test_no_floor_starves_static_pixels(tmp_path):
    ds = load_dataset(pulse_scene(tmp_path))
    b = ds.sample_batch(np.random.default_rng(3), 4000, weights="isg", floor=0.0)
    assert np.all((b.cam == 1) & (b.y >= 4) & (b.x < 4))
    with pytest.raises(ValueError, match="floor"):
        ds.sample_batch(np.random.default_rng(3), 10, weights="isg", floor=1.5)


def test_preprocessing_is_cached_beside_the_frames(tmp_path, monkeypatch):
    ds = load_dataset(pulse_scene(tmp_path))
    first = np.array(preprocess.load_or_compute(ds.cache, "ist", 1))
    assert (ds.cache.stem.parent / (ds.cache.stem.name + ".ist.npy")).exists()
    monkeypatch.setattr(preprocess, "ist_weights", lambda *a, **k: 1 / 0)
    again = preprocess.load_or_compute(ds.cache, "ist", 1)  # no recomputation
    np.testing.assert_array_equal(again, first)
    with pytest.raises(ZeroDivisionError):  # other parameters: recomputed
        preprocess.load_or_compute(ds.cache, "ist", 1, frame_shift=3)
    with pytest.raises(ValueError):
        preprocess.load_or_compute(ds.cache, "nope", 1)


def test_importance_sampler_column_groups():
    """Wide rows: columns are drawn in groups (37 = 12 full groups of 3 + 1 partial group)."""
    rng = np.random.default_rng(5)
    w = rng.uniform(0, 1, (2, 1, 2, 37)).astype(np.float16)
    w[0, 0, 0, 30:] = 0.0
    w[1, 0, 1, 36] = 4.0
    s = ImportanceSampler(w, height=2, width=37, factor=1)
    assert s.group == 3 and s.group_mass.shape == (2, 1, 2, 13)
    n = 200_000
    cam, frame, x, y = s.sample(rng, n, np.array([0, 1]))
    counts = np.zeros((2, 1, 2, 37))
    np.add.at(counts, (cam, frame, y, x), 1)
    expected = s.probability([0, 1]) * n
    assert counts[0, 0, 0, 30:].sum() == 0
    z = (counts - expected) / np.sqrt(expected + 1e-9)
    assert np.abs(z[expected > 0]).max() < 5.0
