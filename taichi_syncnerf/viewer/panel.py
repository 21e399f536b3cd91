"""The viewer's GUI panel, one per browser: time and playback, cameras, what to show, resolution, the
camera path editor's place, and the run's story.

Every browser connected gets its own panel (viser's ``client.gui``), so its time, playback, snapped
camera and choices are its own; the panel is docked to the right of the page, so that the canvas
(and what is rendered for it) is the part of the page the panel leaves. :func:`figures_markdown`
is the text of the figures block, a pure function of the run's numbers so that it can be tested
without a browser.

Keyboard shortcuts (viser's command palette hotkeys, per browser): space plays or pauses, J and L
step one frame back and forward, O goes to the rig overview. The arrow keys and W/A/S/D/Q/E are
viser's own camera keys (turn and move the camera), so they are not used for time.
"""
from __future__ import annotations

from dataclasses import dataclass

from taichi_syncnerf.viewer.compare import FREE_MODES, SHOW_MODEL

FREE_VIEW = "(free view)"
# "while moving" choices: a fraction of the resting height, or "auto": the height that renders at AUTO_FPS
MOVING_SCALES = {"auto": None, "1/2": 0.5, "1/4": 0.25, "1/8": 0.125, "full": 1.0}
AUTO_FPS = 8.0
# the resting resolution: a fraction of the browser canvas's own size
CANVAS_SCALES = {"canvas (sharp)": 1.0, "3/4 canvas": 0.75, "1/2 canvas": 0.5, "1/4 canvas": 0.25}
HOTKEYS = {"play": "space", "back": "J", "forward": "L", "overview": "O"}


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
    """Handles of one browser's panel (viser GUI handles: ``.value`` reads or sets)."""

    time: object
    play: object
    step: object
    loop: object
    speed: object
    clock: object
    snap: object
    overview: object
    show_rig: object
    show: object
    compare_info: object
    resolution: object
    moving: object
    frame_info: object
    path_folder: object
    figures: object
    training_image: object
    offsets_image: object
    camera_table: object
    commands: dict


def camera_choices(camera_names: list[str], test_index: int) -> list[str]:
    return [FREE_VIEW] + [f"{n} (test)" if i == test_index else n for i, n in enumerate(camera_names)]


def build_panel(gui, run_name: str, n_frames: int, fps: float, camera_names: list[str], test_index: int) -> Controls:
    """Add one browser's panel to its viser ``gui`` (``client.gui``)."""
    import numpy as np

    blank = np.full((8, 8, 3), 255, np.uint8)
    with gui.add_folder("Time"):
        time = gui.add_slider("scene frame", min=0.0, max=float(max(n_frames - 1, 1)), step=0.05,
                              initial_value=0.0, hint="Scene time in frames: frame f of camera k shows "
                              "scene time f + its offset")
        play = gui.add_button("play", hint=f"Play or pause ({HOTKEYS['play']})")
        step = gui.add_button_group("step one frame", ["-1 frame", "+1 frame"])
        loop = gui.add_checkbox("loop", initial_value=True, hint="At the last frame go back to the first "
                                "(else stop there)")
        speed = gui.add_slider("speed (frames/s)", min=0.25, max=60.0, step=0.25,
                               initial_value=float(min(max(fps / 3.0, 1.0), 60.0)))
        clock = gui.add_markdown("")
        gui.add_markdown("<small>keys: space play / pause · J, L one frame · O rig overview "
                         "(the arrow keys and W/A/S/D/Q/E turn and move the camera: viser's own)</small>")
    with gui.add_folder("Cameras"):
        snap = gui.add_dropdown("snap to camera", camera_choices(camera_names, test_index), initial_value=FREE_VIEW)
        overview = gui.add_button("rig overview", hint=f"See every camera ({HOTKEYS['overview']})")
        show_rig = gui.add_checkbox("show rig", initial_value=True)
        show = gui.add_dropdown("show", list(FREE_MODES), initial_value=SHOW_MODEL,
                                hint="Snapped to a camera: also its real frame, the two split, their error")
        compare_info = gui.add_markdown("")
    with gui.add_folder("Resolution", expand_by_default=False):
        resolution = gui.add_dropdown("at rest", list(CANVAS_SCALES), initial_value="canvas (sharp)",
                                      hint="Resting resolution: the browser canvas's own pixels, or a part")
        moving = gui.add_dropdown("while moving", list(MOVING_SCALES), initial_value="auto",
                                  hint=f"auto: the resolution that renders at {AUTO_FPS:g} frames per second")
        frame_info = gui.add_markdown("")
    path_folder = gui.add_folder("Camera path", expand_by_default=False)
    with gui.add_folder("Run"):
        figures = gui.add_markdown(f"**{run_name}**")
        training_image = gui.add_image(blank, label="training (log.jsonl)", format="png", visible=False)
        offsets_image = gui.add_image(blank, label="offsets over the steps", format="png", visible=False)
        camera_table = gui.add_html("")
    commands = {}
    for name, label in (("play", "play / pause"), ("back", "one frame back"), ("forward", "one frame forward"),
                        ("overview", "rig overview")):
        commands[name] = gui.add_command(label, hotkey=HOTKEYS[name])
    return Controls(time, play, step, loop, speed, clock, snap, overview, show_rig, show, compare_info,
                    resolution, moving, frame_info, path_folder, figures, training_image, offsets_image,
                    camera_table, commands)


def snapped_index(value: str, camera_names: list[str]) -> int | None:
    """The dataset camera a snap-list entry names, or None for the free view."""
    value = str(value)
    if value == FREE_VIEW:
        return None
    name = value[:-len(" (test)")] if value.endswith(" (test)") else value
    return camera_names.index(name)
