"""A real browser: headless Chromium opens a running viewer, sees the rendered scene, moves the time slider.

Skipped when Chromium or viser is missing (``.ci/run`` installs both). Set ``TSN_VIEWER_RUN`` to a run
folder to look at that run instead of the tiny one, ``TSN_VIEWER_HEIGHT`` for the full render height
and ``TSN_VIEWER_SCREENSHOT`` to a .png path to keep the screenshot (docs/viewer.png was taken so).
"""
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
W, H = 1000, 640
PANEL_X = 620            # the GUI panel floats on the right of the page


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
    """The part of the page where only the rendered image is seen (no panel, no axes gizmo, no toasts)."""
    return img[int(0.3 * H):int(0.92 * H), 90:PANEL_X].astype(np.float64) / 255.0


def expected_crop(sent: np.ndarray) -> np.ndarray:
    """The image the server sent, stretched over the page as viser shows a background image."""
    import cv2

    return canvas_crop(cv2.resize(sent, (W, H), interpolation=cv2.INTER_LINEAR))


def shown(browser, sent: np.ndarray, instead_of: np.ndarray | None = None) -> np.ndarray | None:
    """The page's screenshot when its canvas shows ``sent`` (median error under 4 %) and, where the
    two differ most, looks more like ``sent`` than like ``instead_of``; else None."""
    shot = browser.screenshot()
    if shot.shape[:2] != (H, W):
        return None
    crop, want = canvas_crop(shot), expected_crop(sent)
    LAST["median_error"] = float(np.median(np.abs(crop - want)))
    if LAST["median_error"] >= 0.04:
        return None
    if instead_of is not None:
        other = expected_crop(instead_of)
        mask = changed(want, other)
        LAST["error_where_changed"] = float(np.abs(crop - want)[mask].mean())
        LAST["error_to_other_there"] = float(np.abs(crop - other)[mask].mean())
        if not LAST["error_where_changed"] < 0.85 * LAST["error_to_other_there"]:
            return None
    return shot


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The tenth of the pixels where two images differ most."""
    d = np.abs(a - b).sum(-1)
    return d >= np.percentile(d, 90)


class NewFrame(Exception):
    """The viewer sent another frame while the test waited for the page to show the last one."""


def settled_frame(viewer, t: float, height: int, quiet: float = 1.0):
    """(client view, image, frames sent) once the last frame sent is a full-height one at time ``t``
    and no other frame has followed it for ``quiet`` seconds."""
    since = {}

    def check():
        views = [v for v in viewer.clients.values() if v.last_key is not None]
        if not views or views[0].last_key[2] != height or views[0].last_key[1] != t:
            since.clear()
            return None
        v, n = views[0], views[0].frames_sent
        if since.get("n") != n:
            since.update(n=n, at=time.monotonic())
            return None
        return (v, v.last_image, n) if time.monotonic() - since["at"] >= quiet else None

    return wait_for(f"a settled full-height frame at time {t:g}", check)


def page_shows_frame(browser, viewer, t: float, height: int, instead_of=None, attempts: int = 3):
    """(image sent, screenshot) once the page shows the viewer's settled frame at
    time ``t``; the screenshot is taken with no newer frame sent (else the frame is waited for again)."""
    for _ in range(attempts):
        view, sent, n = settled_frame(viewer, t, height)

        def check():
            shot = shown(browser, sent, instead_of)
            if view.frames_sent != n:
                raise NewFrame
            return shot

        try:
            return sent, wait_for("the page to show the rendered frame", check, timeout=30)
        except NewFrame:
            continue
    raise AssertionError(f"the viewer kept sending frames at time {t:g} ({attempts} tries)")


@pytest.fixture
def browser_run(request):
    """(run folder, its RunModel or None to open it)."""
    env = os.environ.get("TSN_VIEWER_RUN")
    if env:
        return Path(env), None
    return request.getfixturevalue("tiny_run")[0], request.getfixturevalue("run_model")


def test_browser_shows_the_scene_and_follows_the_time_slider(browser_run, tmp_path):
    pytest.importorskip("viser", reason="viser is not installed (pip install -e '.[viewer]')")
    from taichi_syncnerf.viewer.app import Viewer

    run, model = browser_run
    viewer = Viewer(run, port=0, log=lambda s: None, model=model)
    if os.environ.get("TSN_VIEWER_HEIGHT"):
        viewer.controls.height.value = int(os.environ["TSN_VIEWER_HEIGHT"])
    full = int(viewer.controls.height.value)
    # frames while the camera moves at full height too: then every frame the page may show is one
    # the test can tell from another (a coarse moving frame looks almost like the full one)
    viewer.controls.moving.value = "full"
    browser = Chromium(tmp_path / "chromium", W, H)
    try:
        browser.call("Emulation.setDeviceMetricsOverride", width=W, height=H, deviceScaleFactor=1, mobile=False)
        browser.open(viewer.url)
        # viser's toast about software WebGL covers a corner of the page: close it once it is there
        wait_for("the page", lambda: browser.evaluate("document.readyState") == "complete", timeout=30)

        first, shot0 = page_shows_frame(browser, viewer, 0.0, full)
        assert first.shape[0] == full and first.std() > 0.01 * 255, "the model renders a flat image"
        crop0 = canvas_crop(shot0)
        assert crop0.std() > 0.01                       # not a blank page

        # move the time slider as a person would: focus its thumb and press End
        last = float(viewer.controls.time.max)
        found = browser.evaluate(
            "(() => { const s = [...document.querySelectorAll('[role=slider]')]"
            f".find(e => Number(e.getAttribute('aria-valuemax')) === {last:g});"
            " if (!s) return false; s.focus(); return document.activeElement === s; })()")
        assert found, "the time slider is not on the page"
        browser.press("End", "End", 35)
        wait_for("the viewer to receive the slider's move", lambda: viewer.controls.time.value == last, timeout=10)
        second, shot1 = page_shows_frame(browser, viewer, last, full, instead_of=first)
        change = np.abs(second.astype(float) - first.astype(float)).mean() / 255.0
        assert change > 0.003, f"the model's image hardly depends on time ({change:.4f})"
        # the page changed as the rendered image did
        crop1 = canvas_crop(shot1)
        seen, rendered = crop1 - crop0, expected_crop(second) - expected_crop(first)
        mask = changed(expected_crop(second), expected_crop(first))
        assert np.corrcoef(seen[mask].ravel(), rendered[mask].ravel())[0, 1] > 0.5

        if os.environ.get("TSN_VIEWER_SCREENSHOT"):
            browser.evaluate("document.querySelectorAll('.mantine-Notification-closeButton')"
                             ".forEach(b => b.click())")
            time.sleep(0.5)
            shot1 = browser.screenshot()
            import imageio.v3 as iio

            iio.imwrite(os.environ["TSN_VIEWER_SCREENSHOT"], shot1)
    finally:
        browser.close()
        viewer.stop()
