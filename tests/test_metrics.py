"""Tests for taichi_syncnerf.metrics (PSNR, SSIM, LPIPS detection, offset error)."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from taichi_syncnerf import metrics


def ssim_numpy(pred, gt, size=11, sigma=1.5, k1=0.01, k2=0.03):
    """Independent float64 SSIM: explicit 2-D Gaussian window over every valid position."""
    x = np.arange(size) - (size - 1) / 2.0
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))
    g /= g.sum()
    maps = []
    for ch in range(pred.shape[2]):
        a = np.lib.stride_tricks.sliding_window_view(pred[:, :, ch], (size, size))
        b = np.lib.stride_tricks.sliding_window_view(gt[:, :, ch], (size, size))
        mu_a = np.einsum("ijkl,kl->ij", a, g)
        mu_b = np.einsum("ijkl,kl->ij", b, g)
        var_a = np.maximum(np.einsum("ijkl,kl->ij", (a - mu_a[..., None, None]) ** 2, g), 0.0)
        var_b = np.maximum(np.einsum("ijkl,kl->ij", (b - mu_b[..., None, None]) ** 2, g), 0.0)
        cov = np.einsum("ijkl,kl->ij", (a - mu_a[..., None, None]) * (b - mu_b[..., None, None]), g)
        cov = np.sign(cov) * np.minimum(np.sqrt(var_a * var_b), np.abs(cov))
        c1, c2 = k1**2, k2**2
        maps.append((2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)))
    return float(np.mean(maps))


def test_import_does_not_import_torch():
    code = "import sys, taichi_syncnerf.metrics, taichi_syncnerf.plots; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_psnr_identical_is_json_safe_cap(rng):
    img = rng.random((16, 20, 3))
    value = metrics.psnr(img, img.copy())
    assert value == metrics.PSNR_CAP_DB == 100.0
    json.dumps({"psnr": value}, allow_nan=False)


def test_psnr_constant_error(rng):
    gt = rng.uniform(0.2, 0.8, (16, 20, 3))
    assert metrics.psnr(gt + 0.05, gt) == pytest.approx(-10 * math.log10(0.05**2), abs=1e-9)
    assert metrics.psnr(gt - 0.1, gt) == pytest.approx(20.0, abs=1e-9)
    # float32 inputs are scored in float64
    assert metrics.psnr((gt + 0.1).astype(np.float32), gt.astype(np.float32)) == pytest.approx(20.0, abs=1e-4)


def test_psnr_rejects_bad_input(rng):
    img = rng.random((8, 8, 3))
    with pytest.raises(ValueError, match="shape"):
        metrics.psnr(img, img[:, :7])
    with pytest.raises(ValueError, match="dtype"):
        metrics.psnr((img * 255).astype(np.uint8), img)
    bad = img.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        metrics.psnr(bad, img)


def test_ssim_identical_is_one(rng):
    img = rng.random((24, 30, 3))
    assert metrics.ssim(img, img.copy()) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("shape", [(24, 31, 3), (11, 17, 1)])
def test_ssim_matches_numpy_reference(rng, shape):
    gt = rng.random(shape)
    pred = np.clip(gt + 0.2 * rng.standard_normal(shape), 0.0, 1.0)
    ref = ssim_numpy(pred, gt)
    assert metrics.ssim(pred, gt) == pytest.approx(ref, abs=1e-6)
    # also on a smooth image pair, where the SSIM is far from 0
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    smooth = (0.5 + 0.4 * np.sin(xx / 3.0) * np.cos(yy / 4.0))[..., None].repeat(shape[2], axis=2)
    noisy = np.clip(smooth + 0.05 * rng.standard_normal(shape), 0.0, 1.0)
    assert metrics.ssim(noisy, smooth) == pytest.approx(ssim_numpy(noisy, smooth), abs=1e-6)


def test_ssim_decreases_with_noise(rng):
    yy, xx = np.mgrid[0:32, 0:32]
    gt = (0.5 + 0.4 * np.sin(xx / 4.0) * np.cos(yy / 5.0))[..., None].repeat(3, axis=2)
    scores = [metrics.ssim(np.clip(gt + s * rng.standard_normal(gt.shape), 0, 1), gt) for s in (0.01, 0.05, 0.2)]
    assert 1.0 > scores[0] > scores[1] > scores[2]


def test_ssim_too_small_raises(rng):
    img = rng.random((10, 32, 3))
    with pytest.raises(ValueError, match="at least 11"):
        metrics.ssim(img, img)


def test_lpips_detection_reports_reason(rng, monkeypatch, tmp_path):
    img = rng.random((32, 32, 3))
    reason = metrics.lpips_availability("alex")
    value, why = metrics.lpips(img, img, net="alex")
    assert why == reason
    if reason is None:  # weights present on this machine: identical images are at distance 0
        assert value == pytest.approx(0.0, abs=1e-6)
    else:
        assert value is None and isinstance(reason, str) and reason
    # with an empty hub cache and no lpips package, a reason is always given, and nothing downloaded
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert metrics.lpips_availability("vgg") is not None
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="unknown LPIPS"):
        metrics.lpips_availability("resnet")


def test_image_metrics_averages(rng):
    gt = rng.uniform(0.2, 0.8, (16, 16, 3))
    m = metrics.ImageMetrics(lpips_net=None)
    with pytest.raises(ValueError, match="before any image"):
        m.result()
    m.add(gt + 0.1, gt)  # 20 dB
    m.add(gt + 0.01, gt)  # 40 dB
    res = m.result()
    assert res["n_images"] == 2
    assert res["psnr"] == pytest.approx(30.0, abs=1e-9)
    expected_ssim = (metrics.ssim(gt + 0.1, gt) + metrics.ssim(gt + 0.01, gt)) / 2
    assert res["ssim"] == pytest.approx(expected_ssim, abs=1e-12)
    assert res["lpips"] is None and res["lpips_reason"] == "LPIPS disabled"
    json.dumps(res, allow_nan=False)
    default = metrics.ImageMetrics()
    default.add(gt, gt)
    out = default.result()
    assert (out["lpips"] is None) == ("lpips_reason" in out)


def test_lpips_reports_a_package_that_does_not_import(tmp_path, monkeypatch):
    # lpips installed with its linear weights, but a torchvision built for another torch: the
    # reason names the broken import instead of eval crashing later.
    (tmp_path / "lpips" / "weights" / "v0.1").mkdir(parents=True)
    (tmp_path / "lpips" / "__init__.py").write_text("")
    (tmp_path / "lpips" / "weights" / "v0.1" / "alex.pth").write_bytes(b"")
    (tmp_path / "torchvision").mkdir()
    (tmp_path / "torchvision" / "__init__.py").write_text(
        "raise RuntimeError('operator torchvision::nms does not exist')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("lpips", "torchvision"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    reason = metrics.lpips_availability("alex")
    assert reason == ("torchvision is installed but does not import "
                      "(RuntimeError: operator torchvision::nms does not exist)")
    assert metrics.lpips(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))[1] == reason


def _lpips_skip_reason():
    for name in ("lpips", "torchvision"):
        err = metrics._import_error(name)
        if err:
            return f"{name} is not importable here ({err}); see README, LPIPS"
    return None


@pytest.mark.skipif(_lpips_skip_reason() is not None, reason=str(_lpips_skip_reason()))
def test_lpips_figure_appears_when_the_weights_are_present(tmp_path, monkeypatch, rng):
    """With lpips, torchvision and a backbone checkpoint in the torch hub cache, the figure is
    reported. The checkpoint here is a valid SqueezeNet 1.1 state dict with random weights
    (5 MB; the real one is the same file with trained values): enough to see the plumbing work."""
    import torch
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    metrics._lpips_models.clear()
    assert "backbone is not in the torch hub cache" in metrics.lpips_availability("squeeze")
    ckpt = tmp_path / "hub" / "checkpoints" / metrics._backbone_file("squeeze")
    ckpt.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.squeezenet1_1().state_dict(), ckpt)
    assert metrics.lpips_availability("squeeze") is None
    gt = rng.uniform(0.2, 0.8, (48, 48, 3))
    same, why = metrics.lpips(gt, gt, net="squeeze")
    assert why is None and same == pytest.approx(0.0, abs=1e-6)
    m = metrics.ImageMetrics(lpips_net="squeeze")
    m.add(np.clip(gt + rng.normal(0, 0.2, gt.shape), 0, 1), gt)
    res = m.result()
    assert "lpips_reason" not in res and isinstance(res["lpips"], float) and res["lpips"] > 0
    metrics._lpips_models.clear()


def test_offset_mae_hand_example():
    pred = [0.0, 1.0, 2.5, -1.0]
    gt = [0.0, 1.2, 2.0, -1.0]
    # differences 0, -0.2, 0.5, 0 -> median shift 0 -> errors 0, 0.2, 0.5, 0
    res = metrics.offset_mae(pred, gt)
    assert res.shift_frames == pytest.approx(0.0)
    assert res.mae_frames == pytest.approx(0.175)
    assert res.per_camera_frames == pytest.approx({0: 0.0, 1: 0.2, 2: 0.5, 3: 0.0})
    # excluding camera 2: differences 0, -0.2, 0 -> shift 0 -> mae 0.2 / 3
    res = metrics.offset_mae(pred, gt, exclude=[2])
    assert sorted(res.per_camera_frames) == [0, 1, 3]
    assert res.mae_frames == pytest.approx(0.2 / 3)
    d = res.as_dict(camera_names=["a", "b", "c", "d"])
    assert set(d["per_camera_frames"]) == {"a", "b", "d"}
    json.dumps(d, allow_nan=False)


def test_offset_mae_global_shift_invariance(rng):
    gt = rng.normal(0, 3, 9)
    pred = gt + rng.normal(0, 0.3, 9)
    base = metrics.offset_mae(pred, gt, exclude=[0])
    for shift in (-7.25, 0.5, 12.0):
        moved = metrics.offset_mae(pred + shift, gt, exclude=[0])
        assert moved.mae_frames == pytest.approx(base.mae_frames, abs=1e-12)
        assert moved.shift_frames == pytest.approx(base.shift_frames + shift, abs=1e-12)
    assert metrics.offset_mae(gt + 4.0, gt).mae_frames == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("k", [5, 6])
def test_offset_mae_shift_is_optimal(rng, k):
    gt = rng.normal(0, 2, k)
    pred = gt + rng.normal(0, 1, k)
    res = metrics.offset_mae(pred, gt)
    # the L1 optimum lies at one of the differences; add a dense scan for good measure
    scan = np.concatenate([np.linspace(-5, 5, 20001), pred - gt])
    best = np.abs(pred[None, :] - scan[:, None] - gt[None, :]).mean(axis=1).min()
    assert res.mae_frames == pytest.approx(best, abs=1e-12)
    assert np.abs(pred - gt - 0.01 - res.shift_frames).mean() > res.mae_frames - 1e-12


def test_offset_mae_rejects_bad_input():
    with pytest.raises(ValueError, match="length"):
        metrics.offset_mae([0.0, 1.0], [0.0])
    with pytest.raises(ValueError, match="out of range"):
        metrics.offset_mae([0.0, 1.0], [0.0, 1.0], exclude=[2])
    with pytest.raises(ValueError, match="no camera"):
        metrics.offset_mae([0.0], [0.0], exclude=[0])
    with pytest.raises(ValueError, match="NaN"):
        metrics.offset_mae([0.0, float("nan")], [0.0, 1.0])
