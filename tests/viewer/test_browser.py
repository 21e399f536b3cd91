"""A real browser: headless Chromium opens a running viewer and uses it as a person would.

Skipped when Chromium or viser is missing (``.ci/run`` installs both). One viewer and one Chromium
serve the module; each test opens its own tab (its own session). Set ``TSN_VIEWER_RUN`` to a run
folder to look at that run instead of the tiny one, ``TSN_VIEWER_SIZE`` (e.g. ``1280x800``) for the
window, and ``TSN_VIEWER_SCREENSHOT`` to a .png path to keep a screenshot of the first test
(docs/viewer.png is a 1280x800 page of a trained run, taken the same way from a view set by hand).
"""
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from .cdp import Chromium, find_chromium

pytestmark = [
    pytest.mark.skipif(find_chromium() is None,
                       reason="chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)"),
]
W, H = (int(v) for v in os.environ.get("TSN_VIEWER_SIZE", "1000x640").split("x"))
PANEL_W = 324            # the panel docked on the right of the page; the canvas is the rest

LAST = {}                # the last comparison made by shown(), for the message of a time-out


def wait_for(what, check, timeout=60.0, every=0.2):
    end = time.monotonic() + timeout
    LAST.clear()
    while time.monotonic() < end:
        value = check()
        if value is not None and value is not False:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what} {LAST}")


def canvas_crop(img: np.ndarray) -> np.ndarray:
    """The part of the canvas where only the rendered image is seen (no axes gizmo, no toasts, no labels
    near the edges)."""
    cw = W - PANEL_W
    return img[int(0.3 * H):int(0.92 * H), 90:cw - 20].astype(np.float64) / 255.0


def expected_crop(sent: np.ndarray) -> np.ndarray:
    """The image the server sent, stretched over the canvas as viser shows a background image."""
    import cv2

    page = np.zeros((H, W, 3), np.uint8)
    page[:, :W - PANEL_W] = cv2.resize(sent, (W - PANEL_W, H), interpolation=cv2.INTER_LINEAR)
    return canvas_crop(page)


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The tenth of the pixels where two images differ most."""
    d = np.abs(a - b).sum(-1)
    return d >= np.percentile(d, 90)


def shown(tab, sent: np.ndarray, instead_of: np.ndarray | None = None, tolerance: float = 0.04):
    """The page's screenshot when its canvas shows ``sent`` (median error under ``tolerance``) and,
    where the two differ most, looks more like ``sent`` than like ``instead_of``; else None."""
    shot = tab.screenshot()
    if shot.shape[:2] != (H, W):
        return None
    crop, want = canvas_crop(shot), expected_crop(sent)
    LAST["median_error"] = float(np.median(np.abs(crop - want)))
    if LAST["median_error"] >= tolerance:
        return None
    if instead_of is not None:
        other = expected_crop(instead_of)
        mask = changed(want, other)
        LAST["error_where_changed"] = float(np.abs(crop - want)[mask].mean())
        LAST["error_to_other_there"] = float(np.abs(crop - other)[mask].mean())
        if not LAST["error_where_changed"] < 0.85 * LAST["error_to_other_there"]:
            return None
    return shot


class NewFrame(Exception):
    """The viewer sent another frame while the test waited for the page to show the last one."""


def settled_frame(session, t: float, height: int, quiet: float = 1.0):
    """(image, frames sent) once the last frame sent is one of ``height`` at time ``t`` and no other
    frame has followed it for ``quiet`` seconds."""
    since = {}

    def check():
        s = session.shown
        if s is None or s[1] != height or s[0][2] != t:
            since.clear()
            return None
        n = session.frames_sent
        if since.get("n") != n:
            since.update(n=n, at=time.monotonic())
            return None
        return (session.last_image, n) if time.monotonic() - since["at"] >= quiet else None

    return wait_for(f"a settled frame {height} high at time {t:g}", check, timeout=120)


def page_shows_frame(tab, session, t: float, height: int, instead_of=None, attempts: int = 3):
    """(image sent, screenshot) once the page shows the session's settled frame at time ``t``; the
    screenshot is taken with no newer frame sent (else the frame is waited for again)."""
    for _ in range(attempts):
        sent, n = settled_frame(session, t, height)

        def check():
            shot = shown(tab, sent, instead_of)
            if session.frames_sent != n:
                raise NewFrame
            return shot

        try:
            return sent, wait_for("the page to show the rendered frame", check, timeout=30)
        except NewFrame:
            continue
    raise AssertionError(f"the viewer kept sending frames at time {t:g} ({attempts} tries)")


# ---------------------------------------------------------------- the page
def close_toasts(tab) -> None:
    tab.evaluate("document.querySelectorAll('.mantine-Notification-closeButton').forEach(b => b.click())")


def click_button(tab, text: str) -> None:
    """Click the page's button labelled ``text`` (once it is there: a label the server changed arrives later)."""
    wait_for(f"a button {text!r} on the page", lambda: tab.evaluate(
        f"(() => {{ const b = [...document.querySelectorAll('button')].find(b => b.textContent.trim() === "
        f"{json.dumps(text)}); if (!b) return false; b.click(); return true; }})()"), timeout=10)


def open_folder(tab, title: str) -> None:
    ok = tab.evaluate(f"(() => {{ const t = {json.dumps(title)}; const e = [...document.querySelectorAll('*')]"
                      ".filter(e => e.textContent.trim() === t"
                      " && ![...e.children].some(c => c.textContent.trim() === t))"
                      "[0]; if (!e) return false; e.click(); return true; })()")
    assert ok, f"no folder {title!r} on the page"


def choose(tab, current: str, option: str, attempts: int = 5) -> None:
    """Open the dropdown that shows ``current`` and click ``option`` in it, with the mouse (again if the
    list did not open: the panel may still be laying itself out)."""
    def centre(js):
        return tab.evaluate(f"(() => {{ const e = {js}; if (!e) return null; const r = e.getBoundingClientRect(); "
                            "return r.width > 0 ? [r.x + r.width / 2, r.y + r.height / 2] : null; })()")

    for _ in range(attempts):
        xy = wait_for(f"a dropdown showing {current!r}", lambda: centre(
            f"[...document.querySelectorAll('input')].find(i => i.value === {json.dumps(current)})"), timeout=10)
        tab.click(*xy)
        try:
            xy = wait_for(f"option {option!r}", lambda: centre(
                f"[...document.querySelectorAll('[role=option]')].find(o => o.textContent === {json.dumps(option)})"),
                timeout=2)
        except AssertionError:
            continue
        tab.click(*xy)
        return
    raise AssertionError(f"the dropdown showing {current!r} did not offer {option!r}")


def input_value(tab, label: str):
    """The value shown by the input of the panel row labelled ``label``."""
    return tab.evaluate(f"(() => {{ const l = [...document.querySelectorAll('label')].find(l => "
                        f"l.textContent.trim() === {json.dumps(label)}); if (!l) return null; "
                        "const i = document.getElementById(l.htmlFor); return i ? i.value : null; })()")


def slider_value(tab, top: float):
    """The value of the page's slider whose maximum is ``top`` (the time slider)."""
    return tab.evaluate("(() => { const s = [...document.querySelectorAll('[role=slider]')]"
                        f".find(e => Number(e.getAttribute('aria-valuemax')) === {top:g});"
                        " return s ? Number(s.getAttribute('aria-valuenow')) : null; })()")


@pytest.fixture(scope="module")
def served(request, tmp_path_factory):
    """(viewer, Chromium) for the module."""
    pytest.importorskip("viser", reason="viser is not installed (pip install -e '.[viewer]')")
    from taichi_syncnerf.viewer.app import Viewer

    env = os.environ.get("TSN_VIEWER_RUN")
    if env:
        run, model = Path(env), None
    else:
        run, model = request.getfixturevalue("tiny_run")[0], request.getfixturevalue("run_model")
    viewer = Viewer(run, port=0, log=lambda s: None, model=model)
    browser = Chromium(tmp_path_factory.mktemp("chromium"), W, H)
    try:
        yield viewer, browser
    finally:
        browser.close()
        viewer.stop()


def open_tab(served, resolution: str | None = None):
    """A new tab on the viewer: (tab, its session)."""
    viewer, browser = served
    before = set(viewer.sessions)
    tab = browser.new_tab()
    tab.size(W, H)
    t0 = time.time()
    tab.open(viewer.url)
    sid = wait_for("the tab's session", lambda: next(iter(set(viewer.sessions) - before), None), timeout=60)
    session = viewer.sessions[sid]
    if resolution is not None:
        session.controls.resolution.value = resolution
    wait_for("the page", lambda: tab.evaluate("document.readyState") == "complete", timeout=30)
    # the panel docks once the page has laid itself out: then the canvas is the page less the panel
    wait_for("the canvas beside the panel", lambda: session._canvas() == (W - PANEL_W, H), timeout=60)
    session.opened_at = t0
    return tab, session


# ---------------------------------------------------------------- tests
def test_sharp_at_the_canvas_size_and_follows_the_time_slider(served):
    viewer, _ = served
    tab, s = open_tab(served)
    cw, ch = s._canvas()
    # refined at rest up to the canvas's own size, a coarser frame first
    first, shot0 = page_shows_frame(tab, s, 0.0, ch)
    assert first.shape[:2] == (ch, cw)
    assert first.std() > 0.01 * 255, "the model renders a flat image"
    sizes = [(f["kind"], f["height"]) for f in s.stats.frames]
    assert sizes[0][1] < ch and sizes[-1] == ("full", ch), sizes
    frames = ", ".join(f"{f['kind']} {f['width']}x{f['height']} {f['s']:.2f} s" for f in s.stats.frames)
    print(f"\nfirst full {cw}x{ch} frame {s.stats.frames[-1]['at'] - s.opened_at:.1f} s after opening the page "
          f"({frames})")
    assert canvas_crop(shot0).std() > 0.01                      # not a blank page

    # move the time slider as a person would: focus its thumb and press End
    last = float(s.controls.time.max)
    found = tab.evaluate(
        "(() => { const s = [...document.querySelectorAll('[role=slider]')]"
        f".find(e => Number(e.getAttribute('aria-valuemax')) === {last:g});"
        " if (!s) return false; s.focus(); return document.activeElement === s; })()")
    assert found, "the time slider is not on the page"
    tab.press("End", "End", 35)
    wait_for("the viewer to receive the slider's move", lambda: s.controls.time.value == last, timeout=10)
    second, shot1 = page_shows_frame(tab, s, last, ch, instead_of=first)
    change = np.abs(second.astype(float) - first.astype(float)).mean() / 255.0
    assert change > 0.003, f"the model's image hardly depends on time ({change:.4f})"
    crop0, crop1 = canvas_crop(shot0), canvas_crop(shot1)
    seen, rendered = crop1 - crop0, expected_crop(second) - expected_crop(first)
    mask = changed(expected_crop(second), expected_crop(first))
    assert np.corrcoef(seen[mask].ravel(), rendered[mask].ravel())[0, 1] > 0.5
    if os.environ.get("TSN_VIEWER_SCREENSHOT"):
        close_toasts(tab)
        time.sleep(0.5)
        import imageio.v3 as iio

        iio.imwrite(os.environ["TSN_VIEWER_SCREENSHOT"], tab.screenshot())
    tab.close()


def test_each_browser_has_its_own_camera_time_and_snap(served):
    """Bugs: choosing a camera again after orbiting away did nothing (and the panel kept its offset);
    a second tab showed the first's choice with another camera, and scrubbing or snapping in one moved
    every browser; the snapped camera's own frustum framed the picture."""
    viewer, _ = served
    src = viewer.model.source
    tab, s = open_tab(served, "1/4 canvas")
    choose(tab, "(free view)", "cam02")
    wait_for("the snap", lambda: s.snapped == 2 and "of cam02 (offset" in s.controls.clock.content, timeout=10)
    wait_for("the camera on cam02", s._at_snapped_pose, timeout=10)
    assert not s.rig.frusta[2].visible and not s.rig.labels[2].visible      # its own frustum hidden
    assert s.rig.frusta[1].visible
    # orbit away with the mouse: the view is free again, and the panel says so
    tab.drag(200, 300, 300, 340)
    wait_for("the free view", lambda: s.snapped is None and input_value(tab, "snap to camera") == "(free view)",
             timeout=10)
    assert "offset" not in s.controls.clock.content and s.rig.frusta[2].visible
    # the same camera again: the view goes back to it
    choose(tab, "(free view)", "cam02")
    wait_for("the camera on cam02 again", lambda: s.snapped == 2 and s._at_snapped_pose(), timeout=10)

    # a second browser: its own panel, camera and time
    tab2, s2 = open_tab(served, "1/4 canvas")
    assert s2.snapped is None and input_value(tab2, "snap to camera") == "(free view)"
    c2 = np.asarray(s2.client.camera.position)
    assert np.linalg.norm(c2 - src.ds.c2w[2][:, 3]) > 3 * viewer.rig_scale      # not on the first's camera
    s.controls.time.value = 7.0
    time.sleep(0.5)
    top = float(s.controls.time.max)
    wait_for("the first page's slider", lambda: slider_value(tab, top) == 7.0, timeout=10)
    assert s2.controls.time.value == 0.0 and slider_value(tab2, top) == 0.0
    choose(tab2, "(free view)", "cam01")
    wait_for("the second tab's snap", lambda: s2.snapped == 1 and s2._at_snapped_pose(), timeout=10)
    time.sleep(0.5)
    assert s.snapped == 2 and s._at_snapped_pose(), "snapping in one browser moved the other"
    assert input_value(tab, "snap to camera") == "cam02"
    tab2.close()
    tab.close()


def test_real_frame_split_view_and_keys(served):
    """Snapped to a camera: its real frame beside the model, with the frame's PSNR; space plays, L steps."""
    from taichi_syncnerf.evaluate import render_image
    from taichi_syncnerf.viewer.compare import SHOW_SPLIT, letterbox, psnr, split_image

    viewer, _ = served
    m = viewer.model
    src = m.source
    tab, s = open_tab(served, "1/4 canvas")
    close_toasts(tab)
    choose(tab, "(free view)", "cam01")
    wait_for("the snap", lambda: s.snapped == 1 and s._at_snapped_pose(), timeout=10)
    s.controls.time.value = 5.0
    choose(tab, "model", SHOW_SPLIT)
    off = float(m.offsets_frames()[1])
    f = int(round(5.0 - off))
    with m.lock:                               # the viewer's render threads use the model too
        pred = render_image(m.model, src.image_rays(1, f), src.height, src.width)
    gt = src.image(1, f)
    want = (np.clip(letterbox(split_image(pred, gt), (W - PANEL_W) / H), 0, 1) * 255 + 0.5).astype(np.uint8)
    wait_for("the split image", lambda: s.last_image is not None and s.last_image.shape == want.shape
             and np.abs(s.last_image.astype(int) - want).max() <= 1, timeout=60)
    wait_for("the page to show it", lambda: shown(tab, want), timeout=30)
    assert f"cam01 frame **{f}**" in s.controls.compare_info.content
    assert f"PSNR **{psnr(pred, gt):.2f} dB**" in s.controls.compare_info.content
    # keyboard: space plays and pauses, L steps one frame (viser's command hotkeys)
    tab.click(150, 0.5 * H)
    tab.type_key(" ")
    wait_for("play", lambda: s.playing, timeout=10)
    tab.type_key(" ")
    wait_for("pause", lambda: not s.playing, timeout=10)
    t = float(s.controls.time.value)
    tab.type_key("l")
    wait_for("one frame on", lambda: s.controls.time.value == min(np.floor(t) + 1, s.controls.time.max), timeout=10)
    tab.close()


def test_camera_path_made_in_the_page(served, tmp_path):
    """Two keyframes added with the page's button, from two views at two times, saved as camera_path.json."""
    from taichi_syncnerf.camera_path import read_path, to_model, world_from_source

    viewer, _ = served
    tab, s = open_tab(served, "1/4 canvas")
    close_toasts(tab)
    open_folder(tab, "Camera path")
    s.paths.file.value = str(tmp_path / "camera_path.json")
    click_button(tab, "add keyframe")
    wait_for("a keyframe", lambda: len(s.paths.keyframes) == 1, timeout=10)
    tab.drag(200, 300, 260, 300)
    s.controls.time.value = 3.0
    time.sleep(0.3)
    click_button(tab, "add keyframe")
    wait_for("two keyframes", lambda: len(s.paths.keyframes) == 2, timeout=10)
    k0, k1 = s.paths.keyframes
    assert (k0.time, k1.time) == (0.0, 3.0) and np.linalg.norm(k0.c2w[:, 3] - k1.c2w[:, 3]) > 1e-3
    here, _ = s.view_pose()
    np.testing.assert_allclose(k1.c2w, here, atol=1e-9)
    s.paths.seconds.value = 1.0
    s.paths.fps.value = 10.0
    click_button(tab, "save")
    f = wait_for("the file", lambda: (tmp_path / "camera_path.json").is_file() and tmp_path / "camera_path.json")
    cp = read_path(f)
    assert len(cp) == 10 and cp.time[0] == 0.0 and cp.time[-1] == 3.0
    np.testing.assert_allclose(to_model(cp.c2w[-1], world_from_source(viewer.model.source)), k1.c2w, atol=1e-9)
    # loaded back: the keyframes as they were
    s.paths.keyframes = []
    click_button(tab, "load")
    wait_for("the keyframes loaded", lambda: "loaded 2 keyframes" in s.paths.message.content, timeout=10)
    assert len(s.paths.keyframes) == 2
    for a, b in zip(s.paths.keyframes, (k0, k1)):
        np.testing.assert_allclose(a.c2w, b.c2w, atol=1e-9)
        assert (a.fov, a.time) == (b.fov, b.time)
    assert "loaded 2 keyframes" in s.paths.message.content
    # the preview flies the view along the path
    click_button(tab, "preview")
    wait_for("the preview at the path's end", lambda: s.controls.time.value >= 2.0, timeout=20)
    click_button(tab, "stop preview")
    wait_for("the preview to stop", lambda: not s.paths.previewing, timeout=10)
    tab.close()
