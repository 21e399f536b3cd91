"""Per-pixel statistics of the cached frames: MixVoxels std maps, K-Planes ISG and IST weights.

Definitions (checked against K-Planes ``plenoxels/datasets/video_datasets.py``):

- ISG (``dynerf_isg_weight``): with ``d = pixel / 255 - median / 255`` per channel, where ``median``
  is the camera's per-pixel temporal median (``torch.median``: the lower middle value),
  ``psi = mean over RGB of d^2 / (d^2 + gamma^2)``, gamma = 2e-2. Values in [0, 1].
- IST (``dynerf_ist_weight``): per channel, the max over shifts ``s = 1..25`` of ``|I(t+s) - I(t)|``
  and ``|I(t-s) - I(t)|`` in 0..255 units, averaged over RGB, floored at ``alpha = 0.1``.
  Deviation: K-Planes pads the shifted videos with zeros, so in the first and last 25 frames the
  "difference" is the pixel's own brightness (with 30 frames every frame is affected). We only
  compare frames that exist; ``zero_pad=True`` reproduces K-Planes exactly.
- Both are computed on a coarse copy (box average of ``factor x factor`` blocks of the training-
  resolution frames, rounded to uint8) with ``factor = max(1, 4 // downsample)``: K-Planes computes
  them on 4x-downsampled video and trains at 2x (factor 2). :class:`.sampling.ImportanceSampler`
  turns the coarse weights into a full-resolution distribution (nearest-neighbour upsampling).
  Normalisation to probabilities happens at sampling time.
- Std maps (MixVoxels): per pixel, std over frames (0..1 units) per channel, mean over RGB, then a
  31x31 Gaussian blur (OpenCV's default sigma for that size, 5.0). Full training resolution.
- Mean colours (MixVoxels' static target): per pixel and channel, the temporal mean in [0, 1],
  float32, summed exactly in integers one frame at a time (the same values as
  ``frames.astype(float32).mean(0) / 255`` without its (F, H, W, 3) float32 copy).

Results are cached beside the frame cache as ``<frame cache>.<kind>.npy`` (float16 for weights,
float32 for std maps and mean colours) with a JSON sidecar recording the frame cache's build id and
the parameters. Every statistic reads one camera at a time, in frames or bands of rows, so its
memory does not grow with the frame count.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from taichi_syncnerf.data.cache import FrameCache
from taichi_syncnerf.io_utils import atomic_path, write_json_atomic

ISG_GAMMA = 2e-2
IST_ALPHA = 0.1
IST_SHIFT = 25
STD_BLUR = 31
_CHUNK_BYTES = 64 << 20


def coarse_factor(downsample: int) -> int:
    """Factor between training resolution and the 4x-downsampled copy weights are computed on."""
    return max(1, 4 // int(downsample))


def coarse_frames(frames: np.ndarray, factor: int) -> np.ndarray:
    """Box-average ``factor x factor`` blocks (rows/columns past the last full block are dropped).

    Uses OpenCV's INTER_AREA, which for an integer factor is the block mean rounded to the nearest
    integer (ties either way).

    Args:
        frames: (F, H, W, 3) uint8. Returns: (F, H // factor, W // factor, 3) uint8.
    """
    if factor == 1:
        return np.asarray(frames)
    import cv2

    n, h, w, _ = frames.shape
    hc, wc = h // factor, w // factor
    out = np.empty((n, hc, wc, 3), np.uint8)
    for i in range(n):
        block = np.ascontiguousarray(frames[i, :hc * factor, :wc * factor])
        out[i] = cv2.resize(block, (wc, hc), interpolation=cv2.INTER_AREA)
    return out


def isg_weights(frames: np.ndarray, gamma: float = ISG_GAMMA) -> np.ndarray:
    """ISG weights of one camera. frames: (F, H, W, 3) uint8 -> (F, H, W) float32 in [0, 1]."""
    n = frames.shape[0]
    median = np.partition(frames, (n - 1) // 2, axis=0)[(n - 1) // 2].astype(np.float32) / 255.0
    out = np.empty(frames.shape[:3], np.float32)
    rows = _row_chunk(frames.shape, 16)
    for r in range(0, frames.shape[1], rows):
        d = frames[:, r:r + rows].astype(np.float32) / 255.0 - median[None, r:r + rows]
        d *= d
        out[:, r:r + rows] = (d / (d + gamma * gamma)).mean(axis=-1)
    return out


def sliding_extremum(x: np.ndarray, radius: int, op, pad_value) -> np.ndarray:
    """``op`` (np.maximum or np.minimum) over the window ``[t - radius, t + radius]`` along axis 0.

    Frames outside the video count as ``pad_value``. Van Herk / Gil-Werman: block-wise prefix and
    suffix scans, so the cost does not depend on the window size.

    Args:
        x: (F, ...) array. Returns: (F, ...) array of the same dtype.
    """
    n, k = x.shape[0], 2 * radius + 1
    blocks = -(-(n + 2 * radius) // k)
    padded = np.full((blocks * k,) + x.shape[1:], pad_value, x.dtype)
    padded[radius:radius + n] = x
    shaped = padded.reshape((blocks, k) + x.shape[1:])
    prefix = op.accumulate(shaped, axis=1).reshape(padded.shape)
    suffix = op.accumulate(shaped[:, ::-1], axis=1)[:, ::-1].reshape(padded.shape)
    # The window starting at padded index t covers original frames t - radius .. t + radius.
    return op(suffix[:n], prefix[k - 1:k - 1 + n])


def ist_weights(frames: np.ndarray, alpha: float = IST_ALPHA, frame_shift: int = IST_SHIFT,
                zero_pad: bool = False) -> np.ndarray:
    """IST weights of one camera. frames: (F, H, W, 3) uint8 -> (F, H, W) float32 (0..255 units).

    ``max_s |I(t +- s) - I(t)|`` over ``s <= frame_shift`` equals
    ``max(window max - I(t), I(t) - window min)`` over the window ``t +- frame_shift``.
    """
    out = np.empty(frames.shape[:3], np.float32)
    rows = _row_chunk(frames.shape, 8)
    lo_pad, hi_pad = (0, 0) if zero_pad else (255, 0)
    for r in range(0, frames.shape[1], rows):
        x = np.asarray(frames[:, r:r + rows])
        hi = sliding_extremum(x, frame_shift, np.maximum, hi_pad)
        lo = sliding_extremum(x, frame_shift, np.minimum, lo_pad)
        diff = np.maximum(hi - x, x - lo)  # uint8: hi >= x >= lo
        out[:, r:r + rows] = np.maximum(diff.mean(axis=-1, dtype=np.float32), alpha)
    return out


def std_map(frames: np.ndarray, blur: int = STD_BLUR) -> np.ndarray:
    """MixVoxels std map of one camera. frames: (F, H, W, 3) uint8 -> (H, W) float32."""
    import cv2

    n = frames.shape[0]
    if n > 30000:  # pragma: no cover - the int32 sum of squares could overflow
        raise ValueError(f"std_map supports at most 30000 frames, got {n}")
    # Exact integer sums of the differences to the first frame (0 for static pixels).
    shift = np.asarray(frames[0], np.int32)
    acc = np.zeros(frames.shape[1:], np.int32)
    acc2 = np.zeros(frames.shape[1:], np.int32)
    for i in range(1, n):
        d = np.asarray(frames[i], np.int32) - shift
        acc += d
        acc2 += d * d
    mean = acc / n
    var = np.maximum(acc2 / n - mean * mean, 0.0) / (255.0 * 255.0)
    std = np.sqrt(var).mean(axis=-1).astype(np.float32)
    return cv2.GaussianBlur(std, (blur, blur), 0) if blur > 1 else std


def mean_colour(frames: np.ndarray) -> np.ndarray:
    """Temporal mean colour of one camera. frames: (F, H, W, 3) uint8 -> (H, W, 3) float32 in [0, 1].

    Exact integer sums (uint32: at most 16843009 frames), then two float32 divisions: bit for bit
    ``np.asarray(frames, np.float32).mean(axis=0) / 255.0`` (whose float32 partial sums of at most
    65793 frames are exact integers too), one frame in memory at a time.
    """
    n = frames.shape[0]
    acc = np.zeros(frames.shape[1:], np.uint32)
    for i in range(n):
        acc += np.asarray(frames[i])
    return (acc.astype(np.float32) / np.float32(n)) / np.float32(255.0)


def _row_chunk(shape, bytes_per_value: int) -> int:
    per_row = int(np.prod(shape)) // shape[1] * bytes_per_value
    return max(1, min(shape[1], _CHUNK_BYTES // max(per_row, 1)))


def load_or_compute(cache: FrameCache, kind: str, downsample: int = 1, cameras=None,
                    progress: bool = False, **params) -> np.ndarray:
    """Cached per-camera statistics of a frame cache, computed camera by camera on first use.

    Args:
        cache: the frame cache (C, F, H, W, 3).
        kind: "isg" -> (C, F, Hc, Wc) float16, "ist" -> (C, F, Hc, Wc) float16, "std" -> (C, H, W)
            float32, "mean" -> (C, H, W, 3) float32, with ``Hc = H // coarse_factor(downsample)``.
        downsample: the cache's downsampling factor (sets the coarse factor for isg/ist).
        params: overrides of gamma / alpha / frame_shift / zero_pad / blur.
    Returns:
        a read-only memmap.
    """
    funcs = {"isg": isg_weights, "ist": ist_weights, "std": std_map, "mean": mean_colour}
    if kind not in funcs:
        raise ValueError(f"kind must be one of {sorted(funcs)}, got {kind!r}")
    c, nf, h, w, _ = cache.shape
    full = kind in ("std", "mean")   # at training resolution, one map per camera
    factor = 1 if full else coarse_factor(downsample)
    shape = {"std": (c, h, w), "mean": (c, h, w, 3)}.get(kind, (c, nf, h // factor, w // factor))
    dtype = np.float32 if full else np.float16
    path = Path(f"{cache.stem}.{kind}.npy")
    side = path.with_suffix(".json")
    want = {"build_id": cache.build_id, "kind": kind, "factor": factor, "shape": list(shape),
            "params": {k: params[k] for k in sorted(params)}}
    try:
        if json.loads(side.read_text()) == want:
            arr = np.load(path, mmap_mode="r")
            if arr.shape == shape and arr.dtype == dtype:
                return arr
    except (OSError, ValueError):
        pass
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=c, desc=f"{kind} weights", unit="camera", leave=False)
    with atomic_path(path, suffix=".npy") as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        for k in range(c):
            frames = cache.frames[k]
            if full:
                out[k] = funcs[kind](frames, **params)
            else:
                out[k] = funcs[kind](coarse_frames(frames, factor), **params)
            if bar is not None:
                bar.update(1)
        out.flush()
        del out
    if bar is not None:
        bar.close()
    write_json_atomic(side, want)
    return np.load(path, mmap_mode="r")
