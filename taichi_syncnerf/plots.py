"""Training plots written as PNG files (atomic writes).

The figures are drawn on a ``matplotlib.figure.Figure`` with an Agg canvas created inside each
function: pyplot, the global backend and rcParams are never touched.

``log_records`` are the rows of ``log.jsonl``: dicts like
``{"step": int, "loss": float, "batch_psnr": float, "lr": float, "offsets_frames": [float per camera]}``
plus, on validation steps, ``val_train_psnr`` and ``val_test_psnr``.
Rows without a key (or with it set to None) are skipped for the curves that need it.

Example::

    >>> recs = [{"step": s, "loss": 1.0 / (s + 1), "batch_psnr": 10 + s, "offsets_frames": [0.0, 0.1 * s]}
    ...         for s in range(5)]
    >>> plot_training(recs, "/tmp/psnr.png")
    >>> plot_offsets(recs, "/tmp/offsets.png", gt=[0.0, 0.5], camera_names=["cam00", "cam01"])
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np

from .io_utils import atomic_path

_LEGEND_ROWS = 10  # cameras per legend column


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out_png: str | os.PathLike) -> None:
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")


def _series(log_records: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the records that hold a non-None ``key``."""
    steps, values = [], []
    for i, rec in enumerate(log_records):
        if "step" not in rec:
            raise ValueError(f"log record {i} has no 'step'")
        if rec.get(key) is not None:
            steps.append(int(rec["step"]))
            values.append(rec[key])
    return np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64)


def plot_training(log_records: Sequence[dict], out_png: str | os.PathLike) -> None:
    """Training PSNR (top) and loss on a log scale (bottom) over the steps.

    Args:
        log_records: list of log dicts with "step" and at least one of "batch_psnr" (older logs:
            "psnr"), "loss"; "val_train_psnr" / "val_test_psnr" are drawn where present.
        out_png: output PNG path, written atomically (its folder is created).
    """
    s_psnr, psnr = _series(log_records, "batch_psnr")
    if s_psnr.size == 0:                       # logs written before the key was renamed
        s_psnr, psnr = _series(log_records, "psnr")
    s_loss, loss = _series(log_records, "loss")
    if s_psnr.size == 0 and s_loss.size == 0:
        raise ValueError("no log record has 'batch_psnr', 'psnr' or 'loss': nothing to plot")
    fig = _new_figure(7.0, 6.0)
    ax_p, ax_l = fig.subplots(2, 1, sharex=True)
    ax_p.plot(s_psnr, psnr, color="tab:blue", lw=1.0, alpha=0.8, label="batch PSNR (sampled training rays)")
    for key, colour, label in (("val_train_psnr", "tab:green", "full image, a training camera"),
                               ("val_test_psnr", "tab:orange", "full image, test camera (offset not optimised)")):
        s_val, val = _series(log_records, key)
        if s_val.size:
            ax_p.plot(s_val, val, color=colour, lw=1.6, marker="o", ms=3, label=label)
    ax_p.set_ylabel("PSNR (dB)")
    ax_p.set_title("Training: batch PSNR, full-image validation PSNR and loss")
    ax_l.plot(s_loss, loss, color="tab:red", lw=1.2, label="loss")
    if loss.size and np.all(loss > 0):
        ax_l.set_yscale("log")
    ax_l.set_ylabel("loss")
    ax_l.set_xlabel("step")
    for ax in (ax_p, ax_l):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    _save(fig, out_png)


def plot_offsets(
    log_records: Sequence[dict],
    out_png: str | os.PathLike,
    gt: Sequence[float] | None = None,
    camera_names: Sequence[str] | None = None,
) -> None:
    """Each camera's learned time offset (frames) over the steps, with dashed ground truth.

    Args:
        log_records: list of log dicts with "step" and "offsets_frames" (K floats, same K in every row).
        out_png: output PNG path, written atomically (its folder is created).
        gt: optional (K,) true offsets in frames, drawn as dashed lines in each camera's colour.
        camera_names: optional K names for the legend (default cam00, cam01, ...).
    """
    steps, offsets = [], []
    for i, rec in enumerate(log_records):
        if "step" not in rec:
            raise ValueError(f"log record {i} has no 'step'")
        if rec.get("offsets_frames") is not None:
            steps.append(int(rec["step"]))
            offsets.append(list(rec["offsets_frames"]))
    if not steps:
        raise ValueError("no log record has 'offsets_frames': nothing to plot")
    k = len(offsets[0])
    if k == 0 or any(len(o) != k for o in offsets):
        raise ValueError("'offsets_frames' must hold the same non-zero number of cameras in every record")
    off = np.asarray(offsets, dtype=np.float64)  # (n_records, K)
    names = list(camera_names) if camera_names is not None else [f"cam{i:02d}" for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} camera names given for {k} cameras")
    if gt is not None and len(gt) != k:
        raise ValueError(f"{len(gt)} ground-truth offsets given for {k} cameras")

    from matplotlib import colormaps

    if k <= 20:  # qualitative palette; past 20 cameras sample a continuous map so colours stay distinct
        cmap = colormaps["tab10" if k <= 10 else "tab20"]
        colors = [cmap(j) for j in range(k)]
    else:
        colors = [colormaps["turbo"](x) for x in np.linspace(0.05, 0.95, k)]
    fig = _new_figure(8.0 + 1.2 * math.ceil(k / _LEGEND_ROWS), 5.0)
    ax = fig.subplots()
    for j in range(k):
        color = colors[j]
        ax.plot(steps, off[:, j], color=color, lw=1.2, label=names[j])
        if gt is not None:
            ax.axhline(float(gt[j]), color=color, lw=1.0, ls="--", alpha=0.8)
    title = "Per-camera time offsets"
    if gt is not None:
        title += " (dashed: ground truth)"
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel("offset (frames)")
    ax.grid(True, alpha=0.3)
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        ncol=math.ceil(k / _LEGEND_ROWS),
        fontsize="small" if k <= 10 else "x-small",
        frameon=False,
        handlelength=1.5,
        columnspacing=0.8,
    )
    _save(fig, out_png)
