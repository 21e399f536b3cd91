"""What the viewer can show besides the model's colours: the real frame of the camera it is snapped
to, the two side by side, their error, depth and accumulated opacity. Pure numpy.

Snapped to dataset camera ``k`` at scene time ``s``, the real frame is camera ``k``'s frame
``s - offset_k`` (frame f of camera k shows scene time f + offset_k), rounded to the nearest frame
the video has; the model is then rendered at that frame's own scene time (``f + offset_k``), so
the comparison is of one instant. The images are at the dataset's resolution and are letterboxed
to the browser canvas's aspect (:func:`letterbox`), so that they cover the view exactly where the
camera's frustum does (the view and the camera share the vertical field of view).
"""
from __future__ import annotations

import numpy as np

# what the "show" list offers; the last three only while snapped to a dataset camera
SHOW_MODEL, SHOW_DEPTH, SHOW_OPACITY = "model", "depth", "opacity"
SHOW_TRUTH, SHOW_SPLIT, SHOW_ERROR = "real frame", "split: model | real", "error"
FREE_MODES = (SHOW_MODEL, SHOW_DEPTH, SHOW_OPACITY)
SNAPPED_MODES = (SHOW_TRUTH, SHOW_SPLIT, SHOW_ERROR)
ALL_MODES = FREE_MODES + SNAPPED_MODES
ERROR_GAIN = 4.0


def real_frame(scene_time: float, offset: float, n_frames: int) -> tuple[int, bool]:
    """The video frame of a camera with ``offset`` nearest to scene time ``scene_time``, and whether
    the scene time lies within the video (half a frame either side of its ends)."""
    f = float(scene_time) - float(offset)
    inside = -0.5 <= f <= n_frames - 0.5
    return int(min(max(round(f), 0), n_frames - 1)), inside


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float(-10.0 * np.log10(max(mse, 1e-12)))


def error_image(pred: np.ndarray, gt: np.ndarray, gain: float = ERROR_GAIN) -> np.ndarray:
    """Mean absolute error per pixel times ``gain``, as a grey image."""
    e = np.clip(np.abs(pred - gt).mean(-1, keepdims=True) * gain, 0.0, 1.0)
    return np.repeat(e, 3, axis=-1)


def split_image(left: np.ndarray, right: np.ndarray, at: float = 0.5) -> np.ndarray:
    """``left``'s columns before ``at`` (a fraction of the width), ``right``'s after, a white line between."""
    w = left.shape[1]
    c = int(round(at * w))
    out = np.concatenate([left[:, :c], right[:, c:]], axis=1).copy()
    if 0 < c < w:
        out[:, c - 1:c + 1] = 1.0
    return out


def compose(mode: str, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """The image of a snapped "show" mode from the model's render and the real frame."""
    if mode == SHOW_TRUTH:
        return gt
    if mode == SHOW_SPLIT:
        return split_image(pred, gt)
    if mode == SHOW_ERROR:
        return error_image(pred, gt)
    return pred


def letterbox(img: np.ndarray, aspect: float) -> np.ndarray:
    """``img`` padded with black (or cropped) left and right to width / height = ``aspect``, keeping its
    height: a dataset camera's image placed in a view of the same vertical field of view."""
    h, w = img.shape[:2]
    want = max(1, int(round(h * float(aspect))))
    if want == w:
        return img
    if want > w:
        a = (want - w) // 2
        out = np.zeros((h, want) + img.shape[2:], img.dtype)
        out[:, a:a + w] = img
        return out
    a = (w - want) // 2
    return img[:, a:a + want]


def depth_image(depth: np.ndarray, opacity: np.ndarray, near: float, far: float) -> np.ndarray:
    """Expected depth along the ray (``depth / opacity``) on matplotlib's ``turbo`` over ``[near, far]``
    (near red, far blue), faded to black where the ray hits nothing (opacity 0)."""
    from matplotlib import colormaps

    op = np.clip(np.asarray(opacity, np.float64), 0.0, 1.0)
    d = np.asarray(depth, np.float64) / np.maximum(op, 1e-6)
    x = 1.0 - np.clip((d - near) / max(far - near, 1e-9), 0.0, 1.0)
    return colormaps["turbo"](x)[..., :3] * op[..., None]


def depth_range(depth: np.ndarray, opacity: np.ndarray) -> tuple[float, float]:
    """A colour range for the depths of one image: the 2nd and 98th percentiles of the expected depth
    of its pixels that are mostly opaque (for families whose depth is not a distance along the ray
    between the scene's near and far bounds, e.g. the camera z of Gaussians)."""
    op = np.asarray(opacity, np.float64)
    d = np.asarray(depth, np.float64)[op > 0.5] / op[op > 0.5]
    if d.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(d, [2.0, 98.0])
    return float(lo), float(max(hi, lo + 1e-6))


def opacity_image(opacity: np.ndarray) -> np.ndarray:
    """Accumulated opacity as grey (white: the ray ends in the scene, black: it passes through)."""
    return np.repeat(np.clip(np.asarray(opacity, np.float64), 0.0, 1.0)[..., None], 3, axis=-1)
