"""Image-quality and synchronisation metrics.

PSNR and SSIM are computed with torch in float64; LPIPS uses the ``lpips`` package when it and its
backbone weights are already on the machine (nothing is ever downloaded). This is the only module of
the package that uses torch, and it imports torch inside functions, so importing the package never
imports torch.

Images are numpy arrays of shape (H, W, C) (usually C = 3) with floating values in [0, 1].

Example::

    >>> import numpy as np
    >>> gt = np.full((32, 32, 3), 0.5)
    >>> round(psnr(gt + 0.1, gt), 6)
    20.0
    >>> offset_mae([1.0, 2.0, 3.5], [0.0, 1.0, 2.0]).mae_frames  # shift 1 removed
    0.16666666666666666
"""
from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

#: PSNR reported for identical images (mse == 0): a finite, JSON-safe cap instead of +inf.
PSNR_CAP_DB = 100.0

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

LPIPS_NETS = ("alex", "vgg", "squeeze")
# torchvision checkpoint file names of the LPIPS backbones (the torch hub cache holds them under these
# names); used when torchvision cannot be imported to ask it.
_BACKBONE_FILES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}
_lpips_models: dict = {}


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(f"images must both have shape (H, W, C); got {pred.shape} and {gt.shape}")
    for name, a in (("pred", pred), ("gt", gt)):
        if not np.issubdtype(a.dtype, np.floating):
            raise ValueError(f"{name} must be a float image in [0, 1], got dtype {a.dtype}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or infinite values")
    return pred.astype(np.float64, copy=False), gt.astype(np.float64, copy=False)


def psnr(pred: np.ndarray, gt: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for a peak value of 1.

    Args:
        pred: (H, W, C) float image in [0, 1].
        gt: (H, W, C) float image in [0, 1].
    Returns:
        ``-10 log10(mse)``, capped at :data:`PSNR_CAP_DB` (identical images give exactly the cap, so the
        value is always finite and JSON-safe).
    """
    import torch

    pred, gt = _check_pair(pred, gt)
    mse = float(torch.mean((torch.from_numpy(pred) - torch.from_numpy(gt)) ** 2))
    if mse <= 10.0 ** (-PSNR_CAP_DB / 10.0):
        return PSNR_CAP_DB
    return -10.0 * math.log10(mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian of ``size`` taps centred on the middle tap; shape (size,)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004) as computed by K-Planes, MixVoxels and Mip-NeRF.

    Gaussian window of 11 taps with sigma 1.5, applied separably per channel over the 'valid' region
    (no padding), k1 = 0.01, k2 = 0.03, dynamic range 1. Variances are clipped at 0 and the covariance to
    ``sqrt(var_x var_y)`` (as in Mip-NeRF) before forming the map; the result is the mean of the map over
    pixels and channels. Computed with torch ``conv2d`` in float64.

    Args:
        pred: (H, W, C) float image in [0, 1], H and W at least 11.
        gt: (H, W, C) float image in [0, 1].
    Returns:
        SSIM in [-1, 1]; 1 for identical images.
    """
    import torch
    import torch.nn.functional as F

    pred, gt = _check_pair(pred, gt)
    h, w, c = pred.shape
    if min(h, w) < SSIM_WINDOW:
        raise ValueError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {h}x{w}")
    g = torch.from_numpy(gaussian_window())
    wy = g.view(1, 1, -1, 1).expand(c, 1, -1, 1).contiguous()
    wx = g.view(1, 1, 1, -1).expand(c, 1, 1, -1).contiguous()

    def blur(z: "torch.Tensor") -> "torch.Tensor":
        return F.conv2d(F.conv2d(z, wy, groups=c), wx, groups=c)

    x = torch.from_numpy(np.ascontiguousarray(pred.transpose(2, 0, 1)))[None]
    y = torch.from_numpy(np.ascontiguousarray(gt.transpose(2, 0, 1)))[None]
    mu_x, mu_y = blur(x), blur(y)
    var_x = torch.clamp(blur(x * x) - mu_x**2, min=0.0)
    var_y = torch.clamp(blur(y * y) - mu_y**2, min=0.0)
    cov = blur(x * y) - mu_x * mu_y
    cov = torch.sign(cov) * torch.minimum(torch.sqrt(var_x * var_y), cov.abs())
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    num = (2.0 * mu_x * mu_y + c1) * (2.0 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return float(torch.mean(num / den))


def _backbone_file(net: str) -> str:
    """File name of the torchvision checkpoint that ``lpips`` loads as the ``net`` backbone."""
    try:
        from torchvision import models

        weights = {
            "alex": models.AlexNet_Weights.IMAGENET1K_V1,
            "vgg": models.VGG16_Weights.IMAGENET1K_V1,
            "squeeze": models.SqueezeNet1_1_Weights.IMAGENET1K_V1,
        }[net]
        return os.path.basename(weights.url)
    except (ImportError, AttributeError):
        return _BACKBONE_FILES[net]


def _import_error(name: str) -> str | None:
    """None when module ``name`` imports, else the first line of the error."""
    try:
        importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 - any failure means LPIPS cannot run
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
    return None


def lpips_availability(net: str = "alex") -> str | None:
    """Why LPIPS with backbone ``net`` cannot run here, or None when it can (without downloading).

    LPIPS needs the ``lpips`` package (which ships its linear-layer weights), ``torchvision``, and the
    pretrained backbone checkpoint already in the torch hub cache (``$TORCH_HOME/hub/checkpoints``).
    """
    if net not in LPIPS_NETS:
        raise ValueError(f"unknown LPIPS network {net!r}; expected one of {LPIPS_NETS}")
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return "the 'lpips' package is not installed"
    if importlib.util.find_spec("torchvision") is None:
        return "torchvision is not installed"
    for name in ("torchvision", "lpips"):
        # installed is not enough: a torchvision built for another torch fails to import
        broken = _import_error(name)
        if broken:
            return f"{name} is installed but does not import ({broken})"
    pkg_dir = list(spec.submodule_search_locations)[0]
    lin = os.path.join(pkg_dir, "weights", "v0.1", f"{net}.pth")
    if not os.path.isfile(lin):
        return f"the lpips linear-layer weights are missing ({lin})"
    import torch

    ckpt = os.path.join(torch.hub.get_dir(), "checkpoints", _backbone_file(net))
    if not os.path.isfile(ckpt):
        return f"the pretrained {net} backbone is not in the torch hub cache ({ckpt}); no download attempted"
    return None


def lpips(pred: np.ndarray, gt: np.ndarray, net: str = "alex") -> tuple[float | None, str | None]:
    """Learned perceptual distance (Zhang et al. 2018), lower is better.

    Args:
        pred: (H, W, 3) float image in [0, 1].
        gt: (H, W, 3) float image in [0, 1].
        net: backbone, "alex" (the usual choice), "vgg" or "squeeze".
    Returns:
        ``(value, None)`` when LPIPS can run on this machine, else ``(None, reason)`` where the reason
        says what is missing (see :func:`lpips_availability`). Nothing is downloaded.
    """
    pred, gt = _check_pair(pred, gt)
    reason = lpips_availability(net)
    if reason is not None:
        return None, reason
    import torch

    model = _lpips_models.get(net)
    if model is None:
        import lpips as lpips_pkg

        model = lpips_pkg.LPIPS(net=net, verbose=False).eval()
        _lpips_models[net] = model

    def to_t(a: np.ndarray) -> "torch.Tensor":
        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32))[None]

    with torch.no_grad():
        value = model(to_t(pred), to_t(gt), normalize=True)
    return float(value.reshape(-1)[0]), None


class ImageMetrics:
    """Averages PSNR, SSIM and (where available) LPIPS over a set of frames.

    Example::

        m = ImageMetrics()
        for pred, gt in frames:
            m.add(pred, gt)
        m.result()  # {"psnr": ..., "ssim": ..., "lpips": ... or None, "n_images": ...}

    Args:
        lpips_net: LPIPS backbone, or None to skip LPIPS (reported as None with a reason).
    """

    def __init__(self, lpips_net: str | None = "alex"):
        self.lpips_net = lpips_net
        self._psnr: list[float] = []
        self._ssim: list[float] = []
        self._lpips: list[float] = []
        if lpips_net is None:
            self._lpips_reason: str | None = "LPIPS disabled"
        else:
            self._lpips_reason = lpips_availability(lpips_net)

    def add(self, pred: np.ndarray, gt: np.ndarray) -> dict:
        """Score one (H, W, 3) frame pair; returns that frame's metrics."""
        out = {"psnr": psnr(pred, gt), "ssim": ssim(pred, gt)}
        self._psnr.append(out["psnr"])
        self._ssim.append(out["ssim"])
        if self._lpips_reason is None:
            value, self._lpips_reason = lpips(pred, gt, self.lpips_net)
            if value is not None:
                self._lpips.append(value)
                out["lpips"] = value
        return out

    def result(self) -> dict:
        """Means over the frames added: psnr (dB), ssim, lpips (None + lpips_reason if unavailable)."""
        n = len(self._psnr)
        if n == 0:
            raise ValueError("ImageMetrics.result() called before any image was added")
        out = {"psnr": float(np.mean(self._psnr)), "ssim": float(np.mean(self._ssim))}
        if self._lpips_reason is None and len(self._lpips) == n:
            out["lpips"] = float(np.mean(self._lpips))
        else:
            out["lpips"] = None
            out["lpips_reason"] = self._lpips_reason or "LPIPS unavailable for some frames"
        out["n_images"] = n
        return out


@dataclass(frozen=True)
class OffsetError:
    """Offset error after removing the best global shift.

    mae_frames: mean absolute error over the cameras used, in frames.
    shift_frames: the global shift removed (``pred - shift`` is compared with ``gt``).
    per_camera_frames: camera index -> absolute error in frames, for the cameras used.
    """

    mae_frames: float
    shift_frames: float
    per_camera_frames: dict

    def as_dict(self, camera_names: Sequence[str] | None = None) -> dict:
        """JSON-ready form; per-camera errors keyed by name (or by index as a string)."""
        per = {
            (camera_names[i] if camera_names is not None else str(i)): e
            for i, e in self.per_camera_frames.items()
        }
        return {"mae_frames": self.mae_frames, "shift_frames": self.shift_frames, "per_camera_frames": per}


def offset_mae(
    pred_frames: Sequence[float],
    gt_frames: Sequence[float],
    exclude: Iterable[int] | None = None,
) -> OffsetError:
    """Mean absolute offset error, up to the one global shift that offsets cannot determine.

    Offsets are learned relative to the (held-at-zero) test camera, so predictions and ground truth may
    differ by a constant. The shift removed is ``median(pred - gt)`` over the cameras used: the median
    minimises the sum of absolute deviations, so it gives the smallest MAE of all shifts (for an even
    count any value between the two middle differences is optimal; numpy's midpoint is one of them).

    Args:
        pred_frames: (K,) learned offsets in frames, one per camera.
        gt_frames: (K,) true offsets in frames, same convention.
        exclude: camera indices to leave out (e.g. the test camera when scoring train cameras).
    Returns:
        :class:`OffsetError`.
    """
    pred = np.asarray(pred_frames, dtype=np.float64).reshape(-1)
    gt = np.asarray(gt_frames, dtype=np.float64).reshape(-1)
    if pred.shape != gt.shape:
        raise ValueError(f"offset arrays differ in length: {pred.size} predicted, {gt.size} true")
    if not (np.all(np.isfinite(pred)) and np.all(np.isfinite(gt))):
        raise ValueError("offsets contain NaN or infinite values")
    excluded = set(int(i) for i in (exclude or ()))
    bad = [i for i in excluded if not 0 <= i < pred.size]
    if bad:
        raise ValueError(f"excluded camera indices {bad} out of range for {pred.size} cameras")
    used = [i for i in range(pred.size) if i not in excluded]
    if not used:
        raise ValueError("no camera left to score the offsets on")
    from taichi_syncnerf.offsets import alignment_shift

    diff = pred[used] - gt[used]
    shift = alignment_shift(pred, gt, used)
    err = np.abs(diff - shift)
    return OffsetError(
        mae_frames=float(err.mean()),
        shift_frames=shift,
        per_camera_frames={i: float(e) for i, e in zip(used, err)},
    )
