"""The viewer's GUI panel: the run's figures, time, playback, snap-to-camera and resolution controls.

The controls are shared by every browser connected (viser's server GUI); each browser keeps its own
camera. :func:`figures_markdown` is the text of the figures block, a pure function of the run's
numbers so that it can be tested without a browser.
"""
from __future__ import annotations

from dataclasses import dataclass

FREE_VIEW = "(free view)"
# "while moving" choices: a fraction of the full height, or "auto": the height that renders at AUTO_FPS
MOVING_SCALES = {"auto": None, "1/2": 0.5, "1/4": 0.25, "1/8": 0.125, "full": 1.0}
AUTO_FPS = 8.0


def _fmt(v, spec: str, unit: str = "") -> str:
    return "n/a" if v is None else f"{v:{spec}}{unit}"


def figures_markdown(run_name: str, step: int, total_steps: int, metrics: dict, live_mae: float | None,
                     live: bool) -> str:
    """The figures block: step shown, test PSNR/SSIM and offsets MAE from ``metrics.json``, and the
    offsets MAE of the checkpoint shown (it moves while training runs)."""
    test = metrics.get("test", {})
    before = metrics.get("test_before_testoptim", {})
    off = metrics.get("offsets", {})
    rows = [
        ("step shown", f"{step} / {total_steps}" + (" (live)" if live else "")),
        ("test PSNR", _fmt(test.get("psnr"), ".2f", " dB")),
        ("test SSIM", _fmt(test.get("ssim"), ".4f")),
    ]
    if before:
        rows.append(("test PSNR before testoptim", _fmt(before.get("psnr"), ".2f", " dB")))
    if off or live_mae is not None:
        rows.append(("offsets MAE (metrics.json)", _fmt(off.get("mae_frames"), ".3f", " frames")))
        rows.append(("offsets MAE (step shown)", _fmt(live_mae, ".3f", " frames")))
    body = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return f"**{run_name}**\n\n| | |\n|---|---|\n{body}\n"


@dataclass
class Controls:
    """Handles of the panel's inputs (viser GUI handles: ``.value`` reads or sets)."""

    figures: object
    time: object
    playing: object
    speed: object
    snap: object
    clock: object
    height: object
    moving: object
    show_rig: object
    frame_info: object


def build_panel(gui, run_name: str, n_frames: int, fps: float, camera_names: list[str], test_index: int,
                full_height: int) -> Controls:
    """Add the panel to a viser ``gui`` (server-wide)."""
    with gui.add_folder("Run"):
        figures = gui.add_markdown(f"**{run_name}**")
    with gui.add_folder("Time"):
        time = gui.add_slider("scene frame", min=0.0, max=float(max(n_frames - 1, 1)), step=0.05,
                              initial_value=0.0, hint="Scene time in frames: frame f of camera k shows "
                              "scene time f + its offset")
        playing = gui.add_checkbox("play", initial_value=False)
        speed = gui.add_slider("speed (frames/s)", min=0.25, max=60.0, step=0.25,
                               initial_value=float(min(max(fps / 3.0, 1.0), 60.0)))
        clock = gui.add_markdown("")
    with gui.add_folder("Cameras"):
        names = [FREE_VIEW] + [f"{n} (test)" if i == test_index else n for i, n in enumerate(camera_names)]
        snap = gui.add_dropdown("snap to camera", names, initial_value=FREE_VIEW)
        show_rig = gui.add_checkbox("show rig", initial_value=True)
    with gui.add_folder("Resolution"):
        height = gui.add_slider("full height (px)", min=16, max=2048, step=8,
                                initial_value=int(max(16, min(2048, full_height))))
        moving = gui.add_dropdown("while moving", list(MOVING_SCALES), initial_value="auto")
        frame_info = gui.add_markdown("")
    return Controls(figures, time, playing, speed, snap, clock, height, moving, show_rig, frame_info)


def snapped_index(controls: Controls, camera_names: list[str]) -> int | None:
    """The dataset camera chosen in the snap list, or None for the free view."""
    value = str(controls.snap.value)
    if value == FREE_VIEW:
        return None
    name = value[:-len(" (test)")] if value.endswith(" (test)") else value
    return camera_names.index(name)
