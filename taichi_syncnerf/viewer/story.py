"""The run's story in the panel: curves of ``log.jsonl`` and a table of the cameras' offsets.

Pure functions of the run's numbers (no viser), drawn with matplotlib on an Agg canvas of its own
(pyplot and the global rcParams are never touched), returned as uint8 RGB arrays the panel shows
as images:

* :func:`training_figure`: PSNR (batch, and the full-image validations where logged) and the loss
  (log scale) over the steps, as ``training.png`` shows them;
* :func:`offsets_figure`: each camera's learned offset over the steps, each line in the colour its
  frustum has in the rig (the diverging colour map of :func:`taichi_syncnerf.viewer.rig.offset_colors`,
  whose colour bar beside the curves is the legend of the rig's colours), the truth dashed (moved by
  the one global shift offsets cannot determine), and the step shown;
* :func:`camera_table_html`: one row per camera with its colour, learned offset, truth and error.
"""
from __future__ import annotations

import html

import numpy as np

PANEL_PX = 300          # the width of the figures, in pixels (the docked panel's content width)


def _figure(width_px: int, height_px: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / 100.0, height_px / 100.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _pixels(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def _series(records, key):
    pts = [(int(r["step"]), float(r[key])) for r in records if r.get(key) is not None and "step" in r]
    if not pts:
        return np.zeros(0), np.zeros(0)
    s, v = zip(*pts)
    return np.asarray(s), np.asarray(v)


def _small(ax) -> None:
    ax.tick_params(which="both", labelsize=7, length=2, pad=1)
    ax.grid(True, alpha=0.3, which="both")


def training_figure(records: list[dict], step_shown: int | None = None,
                    width_px: int = PANEL_PX) -> np.ndarray | None:
    """PSNR and loss over the steps (None when the log holds neither)."""
    s_psnr, psnr = _series(records, "batch_psnr")
    if s_psnr.size == 0:
        s_psnr, psnr = _series(records, "psnr")
    s_loss, loss = _series(records, "loss")
    if s_psnr.size == 0 and s_loss.size == 0:
        return None
    fig = _figure(width_px, int(width_px * 0.75))
    ax_p, ax_l = fig.subplots(2, 1, sharex=True)
    ax_p.plot(s_psnr, psnr, color="tab:blue", lw=0.8, label="batch")
    for key, colour, label in (("val_train_psnr", "tab:green", "train cam"),
                               ("val_test_psnr", "tab:orange", "test cam")):
        s, v = _series(records, key)
        if s.size:
            ax_p.plot(s, v, color=colour, lw=1.2, marker="o", ms=2, label=label)
    ax_p.set_ylabel("PSNR dB", fontsize=7)
    ax_p.legend(fontsize=6, loc="lower right", handlelength=1.2, borderpad=0.3, labelspacing=0.2)
    ax_l.plot(s_loss, loss, color="tab:red", lw=0.8)
    if loss.size and np.all(loss > 0):
        ax_l.set_yscale("log")
    ax_l.set_ylabel("loss", fontsize=7)
    ax_l.set_xlabel("step", fontsize=7)
    for ax in (ax_p, ax_l):
        _small(ax)
        if step_shown is not None:
            ax.axvline(step_shown, color="0.3", lw=0.8, ls=":")
    return _pixels(fig)


def offsets_figure(records: list[dict], names: list[str], colours: list[tuple[int, int, int]], limit: float,
                   truth=None, step_shown: int | None = None, width_px: int = PANEL_PX) -> np.ndarray | None:
    """Each camera's offset over the steps in its rig colour, with the colour bar of the rig's colours
    (``limit``: the offset at the ends of the colour map). None when the log has no offsets."""
    from matplotlib import colormaps, patheffects
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    rows = [(int(r["step"]), list(r["offsets_frames"])) for r in records
            if r.get("offsets_frames") is not None and "step" in r and len(r["offsets_frames"]) == len(names)]
    if not rows:
        return None
    steps = np.asarray([s for s, _ in rows])
    off = np.asarray([o for _, o in rows], np.float64)
    fig = _figure(width_px, int(width_px * 0.62))
    ax = fig.subplots()
    # a grey edge keeps the colours near 0 (white in the map) visible on the white background
    edge = [patheffects.withStroke(linewidth=2.4, foreground="0.45")]
    for k, name in enumerate(names):
        c = tuple(v / 255.0 for v in colours[k])
        ax.plot(steps, off[:, k], color=c, lw=1.2, path_effects=edge)
        if truth is not None:
            ax.axhline(float(truth[k]), color=c, lw=0.9, ls="--", path_effects=edge)
    if step_shown is not None:
        ax.axvline(step_shown, color="0.3", lw=0.8, ls=":")
    ax.set_xlabel("step", fontsize=7)
    ax.set_ylabel("offset (frames)", fontsize=7)
    _small(ax)
    bar = fig.colorbar(ScalarMappable(Normalize(-limit, limit), colormaps["coolwarm"]), ax=ax, pad=0.02,
                       fraction=0.06, aspect=18)
    bar.ax.tick_params(labelsize=6, length=2, pad=1)
    bar.set_label("rig colour = offset" + (" (dashed: truth)" if truth is not None else ""), fontsize=6)
    return _pixels(fig)


def camera_table_html(names: list[str], offsets, colours, truth=None, test_index: int | None = None) -> str:
    """An HTML table: colour, camera, learned offset, truth and error (frames)."""
    head = "<th></th><th align=left>camera</th><th align=right>learned</th>"
    if truth is not None:
        head += "<th align=right>truth</th><th align=right>error</th>"
    rows = []
    for k, name in enumerate(names):
        r, g, b = colours[k]
        swatch = f'<span style="display:inline-block;width:10px;height:10px;background:rgb({r},{g},{b})"></span>'
        label = html.escape(name) + (" (test)" if k == test_index else "")
        cells = f"<td>{swatch}</td><td>{label}</td><td align=right>{float(offsets[k]) + 0.0:+.2f}</td>"
        if truth is not None:
            err = float(offsets[k]) - float(truth[k])
            cells += f"<td align=right>{float(truth[k]) + 0.0:+.2f}</td><td align=right>{err + 0.0:+.2f}</td>"
        rows.append(f"<tr>{cells}</tr>")
    return ('<table style="font-size:11px;border-collapse:collapse;width:100%">'
            f"<tr>{head}</tr>{''.join(rows)}</table>"
            '<div style="font-size:10px;color:#666">offsets in frames: frame f of a camera shows scene time '
            "f + its offset" + ("; truth moved by the one global shift offsets cannot determine" if truth is not None
                                else "") + "</div>")
