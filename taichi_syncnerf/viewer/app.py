"""The viewer's server: a viser page per browser, rendered by the run's model from the browser's camera.

Every browser has its own :class:`Session`: its panel (time, playback, snapped camera, what to show,
resolution, camera path), its drawing of the rig and a render thread. The picture is rendered at the
browser canvas's own size (or a chosen part of it): while the camera moves (or time plays) at the
"while moving" resolution (by default the one that renders at ``AUTO_FPS``); once the camera has
rested ``SETTLE_S`` seconds the view is refined in passes over one image (:func:`pass_strides`):
every 16th (or 8th, 4th, 2nd) pixel first, a first picture within about ``REFINE_S``, then the pixels
between, each pass shown as it ends, no ray rendered twice; a resting frame is abandoned as soon as
the view, the time or the choice shown changes.

In live mode a poller reloads the run's newest checkpoint; ``max_load`` then caps the share of one
core's time the renders take (each render is followed by a rest), and ``niceness`` lowers the
priority of every thread of the process once it has started (the render and reload threads,
viser's server threads that encode and send the frames, Taichi's workers; not the start-up, which
compiles the kernels), so that training keeps its pace: beside a training that keeps a core busy, a
thread at nice 19 gets about 1.5 % of it, and in the SCHED_IDLE class (which nice 19 also selects)
it runs only on time the training leaves.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import numpy as np

from taichi_syncnerf.errors import UserError
from taichi_syncnerf.viewer import require_viser
from taichi_syncnerf.viewer.camera import c2w_from_viser, camera_fov, view_intrinsics
from taichi_syncnerf.viewer.compare import (ALL_MODES, FREE_MODES, SHOW_DEPTH, SHOW_MODEL, SHOW_OPACITY,
                                            SNAPPED_MODES, compose, depth_image, depth_range, letterbox,
                                            opacity_image, psnr, real_frame)
from taichi_syncnerf.viewer.cost import FrameCost
from taichi_syncnerf.viewer.live import RunModel
from taichi_syncnerf.viewer.panel import (AUTO_FPS, CANVAS_SCALES, FREE_VIEW, MOVING_SCALES, build_panel,
                                          figures_markdown, snapped_index)
from taichi_syncnerf.viewer.rig import RigDrawing, offset_colors, overview_pose, rig_cameras, rig_scale, scene_up

SETTLE_S = 0.25         # the camera is "at rest" this long after its last move
REFINE_S = 0.3          # a resting frame's first pass is predicted to take no longer than this
POLL_S = 1.0            # live mode: how often the checkpoints folder is looked at
TICK_S = 1.0 / 30.0     # playback and path preview step
SNAP_ECHO_S = 2.0       # after a snap, camera messages of the old pose are the browser catching up


def lower_process_priority(niceness: int) -> None:
    """Add ``niceness`` to the nice value of every thread of this process (Taichi's workers, the main
    thread), and so of every thread started later, which inherits it. Linux: per thread, through
    /proc/self/task; elsewhere the process's nice value. A thread that ends at nice 19 is also put
    in the SCHED_IDLE class where there is one: it then runs only on CPU time no normal thread
    wants, and its wake-ups never preempt one (at nice 19 alone a waking thread may still cut in)."""
    if niceness <= 0:
        return
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        try:
            os.nice(niceness)
        except (AttributeError, OSError):
            pass
        return
    for task in tasks.iterdir():
        try:
            tid = int(task.name)
            nice = min(19, os.getpriority(os.PRIO_PROCESS, tid) + niceness)
            os.setpriority(os.PRIO_PROCESS, tid, nice)
            if nice >= 19 and hasattr(os, "SCHED_IDLE"):
                os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        except (ValueError, OSError):
            pass  # a thread that ended meanwhile


def check_port(host: str, port: int) -> None:
    """A one-line UserError when ``host:port`` cannot be listened on (viser would silently take the next)."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise UserError(f"--host {host}: not an address of this machine ({e.strerror})") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            if e.errno == 98:
                raise UserError(f"port {port} on {host} is taken (another viewer?): choose another with --port")
            raise UserError(f"cannot listen on {host}:{port} ({e.strerror})") from None


class FrameStats:
    """Durations of the last frames rendered for one browser, by kind ("moving", "refining", "full"),
    and the time from the view's last change to its full frame."""

    def __init__(self, keep: int = 50):
        self.keep = keep
        self.frames: list[dict] = []
        self.time_to_full: float | None = None
        self.lock = threading.Lock()

    def add(self, kind: str, width: int, height: int, seconds: float) -> None:
        with self.lock:
            self.frames = (self.frames + [{"kind": kind, "width": width, "height": height, "s": seconds,
                                           "at": time.time()}])[-self.keep:]

    def last(self, kind: str) -> tuple[int, int, float] | None:
        """``(width, height, seconds)`` of the last frame of ``kind``, the seconds the median of the
        last (up to 10) frames of that kind AND that size: a size is never paired with the time of
        frames of another."""
        with self.lock:
            frames = [x for x in self.frames if x["kind"] == kind]
        if not frames:
            return None
        w, h = frames[-1]["width"], frames[-1]["height"]
        same = [x["s"] for x in frames if (x["width"], x["height"]) == (w, h)][-10:]
        return w, h, float(np.median(same))

    def summary(self) -> str:
        parts = []
        for kind in ("moving", "full"):
            last = self.last(kind)
            if last is not None:
                w, h, s = last
                text = f"{kind} {w}x{h}: " + (f"{s * 1000:.0f} ms" if s < 1.0 else f"{s:.2f} s") + f" ({1 / s:.1f} fps)"
                if kind == "full" and self.time_to_full is not None:
                    text += f", {self.time_to_full:.2f} s after the view changed"
                parts.append(text)
        return " · ".join(parts)


def pass_strides(n_pixels: int, cost: FrameCost | None, most: int = 16) -> tuple[int, ...]:
    """The passes a resting frame of ``n_pixels`` is rendered in (see
    :meth:`taichi_syncnerf.viewer.live.RunModel.render_progressive`): strides halving down to 1, the
    first the smallest (up to ``most``) whose pass is predicted (by ``cost``) to take no more than
    ``REFINE_S``; all of them while no speed is measured yet."""
    s = 1
    while s < most and (cost is None or not cost.known or cost.seconds(n_pixels / (s * s)) > REFINE_S):
        s *= 2
    out = [s]
    while out[-1] > 1:
        out.append(out[-1] // 2)
    return tuple(out)


def moving_height(choice: str, target: int, aspect: float, cost: FrameCost | None) -> int:
    """Height while moving: a fraction of the resting height, or for "auto" the height whose frame
    is predicted (by ``cost``) to take 1/AUTO_FPS s; 24 rows while nothing is measured."""
    scale = MOVING_SCALES[choice]
    if scale is not None:
        return max(8, int(round(target * scale)))
    return (cost if cost is not None else FrameCost()).height_for(1.0 / AUTO_FPS, aspect, 8, target)


def _f2(x: float, sign: str = "") -> str:
    """Two decimals, never "-0.00"."""
    return f"{round(float(x), 2) + 0.0:{sign}.2f}"


def to_u8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


class Session:
    """One browser: its panel, its rig drawing, its camera path and a thread that renders for it."""

    def __init__(self, viewer: "Viewer", client):
        from taichi_syncnerf.viewer.paths import PathEditor

        self.viewer, self.client = viewer, client
        m = viewer.model
        src = m.source
        self.stats = FrameStats()
        self.alive = True
        self.snapped: int | None = None
        self._snap_pose = None                    # (position, forward) the view was snapped to
        self._pre_snap_pose = None                # and the one it left, which the browser may still report
        self._snap_echo_until = 0.0
        self.last_move = time.monotonic()
        self.last_view = None                     # the pose of the last camera message that moved it
        self.shown = None                         # (what, height) of the last frame sent
        self.last_image: np.ndarray | None = None
        self.frames_sent = 0
        self.cost = FrameCost()                   # measured render speed
        self._rest = (None, 0.0)                  # (what, since) of the view being refined
        self._labels_for = None
        self.compare_text = ""
        gui = client.gui
        self.controls = c = build_panel(gui, viewer.run.name, src.n_frames, src.fps, src.camera_names,
                                        src.test_index)
        self.rig = RigDrawing(client.scene, viewer.rig_cameras)
        self.paths = PathEditor(self, gui, client.scene, c.path_folder, viewer.run / "camera_path.json",
                                src.width, src.height, src.fps)
        self._wire()
        self.show_story()
        self.overview()
        client.camera.on_update(self._moved)
        self.thread = threading.Thread(target=self._loop, name=f"view-{client.client_id}", daemon=True)
        self.thread.start()

    # ----- the panel
    def _wire(self) -> None:
        c = self.controls
        c.snap.on_update(lambda _e: self._snap_chosen())
        c.time.on_update(lambda _e: self.update_clock())
        c.show_rig.on_update(lambda _e: self.rig.set_visible(bool(c.show_rig.value)))
        c.play.on_click(lambda _e: self.toggle_play())
        c.step.on_click(lambda e: self.step(-1 if e.target.value.startswith("-") else 1))
        c.overview.on_click(lambda _e: self.overview())
        c.show.on_update(lambda _e: self.update_clock())
        c.commands["play"].on_trigger(lambda _e: self.toggle_play())
        c.commands["back"].on_trigger(lambda _e: self.step(-1))
        c.commands["forward"].on_trigger(lambda _e: self.step(1))
        c.commands["overview"].on_trigger(lambda _e: self.overview())

    @property
    def playing(self) -> bool:
        return self.controls.play.label == "pause"

    def toggle_play(self, on: bool | None = None) -> None:
        on = (not self.playing) if on is None else bool(on)
        self.controls.play.label = "pause" if on else "play"

    def clamp_time(self, t: float) -> float:
        c = self.controls.time
        return float(min(max(round(float(t) / c.step) * c.step, c.min), c.max))

    def step(self, frames: int) -> None:
        """One frame back or forward (to the next whole frame; past an end: round with loop, else stop)."""
        self.toggle_play(False)
        c = self.controls
        t = float(c.time.value)
        t = np.floor(t + 1e-6) + 1 if frames > 0 else np.ceil(t - 1e-6) - 1
        top = float(c.time.max)
        if t > top:
            t = 0.0 if c.loop.value else top
        elif t < 0:
            t = top if c.loop.value else 0.0
        c.time.value = self.clamp_time(t)

    def tick(self, dt: float) -> None:
        """Playback: advance the time by the speed; the path preview."""
        c = self.controls
        if self.paths.previewing:
            self.paths.tick(dt)
        elif self.playing:
            top = float(c.time.max)
            s = float(c.time.value) + float(c.speed.value) * dt
            if s > top + 0.5 * c.time.step:
                if c.loop.value:
                    s = s % (top + c.time.step)
                else:
                    s = top
                    self.toggle_play(False)
            c.time.value = self.clamp_time(min(s, top))
        info = self.stats.summary()
        if info and c.frame_info.content != info:
            c.frame_info.content = info

    def update_clock(self) -> None:
        m, c = self.viewer.model, self.controls
        s = float(c.time.value)
        text = f"scene frame **{_f2(s)}**"
        k = self.snapped
        if k is not None:
            off = float(m.offsets_frames()[k])
            text += f" = frame **{_f2(s - off)}** of {m.source.camera_names[k]} (offset {_f2(off, '+')})"
        c.clock.content = text
        mode = self.mode()
        if mode in (SHOW_DEPTH, SHOW_OPACITY) and m.depth_note is not None:
            c.compare_info.content = f"{mode}: not available, the model is shown ({m.depth_note})"
        elif mode in SNAPPED_MODES:
            c.compare_info.content = self.compare_text
        elif k is not None:
            c.compare_info.content = "show *real frame*, *split* or *error* to compare with the camera's video"
        else:
            c.compare_info.content = "snap to a camera to compare with its real frames"

    def show_story(self) -> None:
        """The run's figures, curves and camera table (computed once per checkpoint by the viewer)."""
        v, c = self.viewer, self.controls
        c.figures.content = v.story["figures"]
        for handle, img in ((c.training_image, v.story["training"]), (c.offsets_image, v.story["offsets"])):
            if img is not None:
                handle.image = img
            handle.visible = img is not None
        c.camera_table.content = v.story["table"]
        self.rig.update(v.rig_cameras)
        self._labels_for = None                  # new labels: placed again
        self.update_clock()

    def mode(self) -> str:
        """What is shown: the "show" choice, the model's colours for a snapped-only choice in free view."""
        mode = str(self.controls.show.value)
        return SHOW_MODEL if (mode in SNAPPED_MODES and self.snapped is None) else mode

    # ----- the camera
    def view_pose(self) -> tuple[np.ndarray, float]:
        """The browser camera's OpenGL (3, 4) camera-to-world and vertical field of view (degrees)."""
        cam = self.client.camera
        return c2w_from_viser(cam.wxyz, cam.position), float(np.degrees(cam.fov))

    def set_view(self, c2w, fov: float, target=None, up=None) -> None:
        """Put the browser's camera at pose ``c2w`` (OpenGL (3, 4)) with vertical field ``fov`` (radians)."""
        c2w = np.asarray(c2w, np.float64)
        pos = c2w[:3, 3]
        if target is None:
            target = pos - c2w[:3, 2] * self.viewer.focus_distance
        with self.client.atomic():
            self.client.camera.up_direction = tuple(c2w[:3, 1] if up is None else up)
            self.client.camera.position = tuple(pos)
            self.client.camera.look_at = tuple(target)
            self.client.camera.fov = float(fov)

    def overview(self) -> None:
        """The rig overview: every camera in the picture, the view free."""
        self._unsnap()
        src = self.viewer.model.source
        fov = float(camera_fov(src.ds.intrinsics[src.test_index])[0])
        cam = self.client.camera
        aspect = cam.aspect if cam.image_height else src.width / src.height
        pos, target, up = overview_pose(src.ds.c2w, fov, aspect)
        with self.client.atomic():
            self.client.camera.up_direction = tuple(up)
            self.client.camera.position = tuple(pos)
            self.client.camera.look_at = tuple(target)
            self.client.camera.fov = fov

    def _snap_chosen(self) -> None:
        k = snapped_index(self.controls.snap.value, self.viewer.model.source.camera_names)
        if k is None:
            self._unsnap()
        else:
            self.snap(k)

    def snap(self, k: int) -> None:
        """Put the view on dataset camera ``k`` (pose and vertical field of view); its own frustum is hidden."""
        src = self.viewer.model.source
        self.paths.stop_preview()
        c2w = np.asarray(src.ds.c2w[k], np.float64)
        self.snapped = k
        self._pre_snap_pose = self._here()
        self._snap_pose = (c2w[:3, 3].copy(), -c2w[:3, 2].copy())
        self._snap_echo_until = time.monotonic() + SNAP_ECHO_S
        self.set_view(c2w, camera_fov(src.ds.intrinsics[k])[0])
        self.rig.hide_camera(k)
        self.controls.show.options = list(ALL_MODES)
        want = self.controls.snap.options[k + 1]
        if self.controls.snap.value != want:
            self.controls.snap.value = want
        self.update_clock()

    def _unsnap(self) -> None:
        """Back to the free view: the list says so, the camera's frustum is shown again."""
        if self.snapped is None and self.controls.snap.value == FREE_VIEW:
            return
        self.snapped = None
        self.rig.hide_camera(None)
        c = self.controls
        if str(c.show.value) in SNAPPED_MODES:
            c.show.value = SHOW_MODEL
        c.show.options = list(FREE_MODES)
        if c.snap.value != FREE_VIEW:
            c.snap.value = FREE_VIEW
        self.update_clock()

    def _here(self) -> tuple[np.ndarray, np.ndarray]:
        """(position, viewing direction) of the browser's camera as last reported."""
        cam = self.client.camera
        return np.asarray(cam.position, np.float64).copy(), -c2w_from_viser(cam.wxyz, cam.position)[:, 2]

    def _is_at(self, pose) -> bool:
        if pose is None:
            return False
        pos, forward = pose
        here, look = self._here()
        tol = 1e-4 * max(1.0, float(np.linalg.norm(pos))) + 1e-3 * self.viewer.rig_scale
        return bool(np.linalg.norm(here - pos) < tol and float(look @ forward) > 1.0 - 1e-5)

    def _at_snapped_pose(self) -> bool:
        return self._is_at(self._snap_pose)

    def _pose_key(self):
        cam = self.client.camera
        return tuple(np.round(cam.wxyz, 9)), tuple(np.round(cam.position, 9)), round(float(cam.fov), 9)

    def _moved(self, _camera) -> None:
        # the browser also sends its camera when nothing moved (a resize of the page, a new panel):
        # only a real move drops to the moving height, or the page would flash a coarse frame
        view = self._pose_key()
        if view != self.last_view:
            self.last_view = view
            self.last_move = time.monotonic()
        if self.snapped is not None and not self.paths.previewing:
            if self._at_snapped_pose():
                self._snap_echo_until = 0.0          # the browser is there: any other pose is a move away
            elif time.monotonic() > self._snap_echo_until or not self._is_at(self._pre_snap_pose):
                self._unsnap()                       # (before it got there it may report the pose it left)

    # ----- rendering
    def _canvas(self) -> tuple[int, int]:
        cam = self.client.camera
        return int(cam.image_width), int(cam.image_height)

    def _what(self) -> tuple:
        """Everything a resting frame depends on (a change abandons the frame being rendered)."""
        c, m = self.controls, self.viewer.model
        mode = self.mode()
        if mode in SNAPPED_MODES:
            return ("compare", self.snapped, mode, float(c.time.value), self._canvas(), m.version)
        return (self._pose_key(), self._canvas(), float(c.time.value), mode, str(c.resolution.value), m.version)

    def _loop(self) -> None:
        v = self.viewer
        while self.alive and not v.stopped.is_set():
            try:
                seconds = self._render_once()
            except Exception as e:                  # a failed frame must not end the browser's renders
                v.log(f"viewer: a frame failed: {e!r}")
                seconds = None
                v.stopped.wait(1.0)
            if seconds is None:
                time.sleep(0.01)
            elif v.max_load < 1.0:
                v.stopped.wait(seconds * (1.0 / v.max_load - 1.0))

    def _send(self, img: np.ndarray, what, height: int) -> None:
        u8 = to_u8(img)
        self.client.scene.set_background_image(u8, format="jpeg", jpeg_quality=90)
        self.last_image, self.shown = u8, (what, height)
        self.frames_sent += 1

    def _place_labels(self, W: int, H: int) -> None:
        key = (self._pose_key(), W, H, self.rig.hidden_camera)
        if key != self._labels_for:
            self._labels_for = key
            cam = self.client.camera
            self.rig.place_labels(c2w_from_viser(cam.wxyz, cam.position), float(cam.fov), W, H)

    def _picture(self, mode: str, out: dict) -> np.ndarray:
        m = self.viewer.model
        if mode == SHOW_DEPTH and "depth" in out:
            # a ray family's depth is a distance along the ray, within the scene's [near, far]; an image
            # family's (camera z) gets the range of its own image
            near, far = ((m.source.near, m.source.far) if m.is_ray_family
                         else depth_range(out["depth"], out["opacity"]))
            return depth_image(out["depth"], out["opacity"], near, far)
        if mode == SHOW_OPACITY and "opacity" in out:
            return opacity_image(out["opacity"])
        return out["rgb"]

    def _render_once(self) -> float | None:
        """Render and send the next frame the view needs; its seconds, or None when none was needed."""
        v, c = self.viewer, self.controls
        W, H = self._canvas()
        if W <= 0 or H <= 0:
            return None
        self._place_labels(W, H)
        what = self._what()
        if what[0] == "compare":
            return self._render_compare(what, W, H)
        now = time.monotonic()
        moving = (now - self.last_move < SETTLE_S) or self.playing or self.paths.previewing
        aspect = W / H
        target = max(8, int(round(H * CANVAS_SCALES[str(c.resolution.value)])))
        shown = self.shown[1] if self.shown is not None and self.shown[0] == what else 0
        wxyz, pos, fov = what[0]
        mode = what[3]
        layers = mode in (SHOW_DEPTH, SHOW_OPACITY)
        c2w = c2w_from_viser(wxyz, pos)
        t0 = time.perf_counter()
        if moving:
            height = moving_height(str(c.moving.value), target, aspect, self.cost)
            if shown == height:
                return None
            intr = view_intrinsics(fov, aspect, height)
            out = v.model.render_layers(c2w, intr, what[2], self.ref_cam(), layers=layers)
            kind = "moving"
        else:
            if shown >= target:
                return None
            if self._rest[0] != what:      # measured from the camera's last move, or from now (time, choices)
                self._rest = (what, self.last_move if now - self.last_move < 1.0 else now)
            intr = view_intrinsics(fov, aspect, target)

            def on_pass(stride, images):
                eff = max(1, target // stride)
                if eff > shown and self.alive:
                    self._send(self._picture(mode, images), what, eff)
                    self.stats.add("refining", -(-intr.width // stride), eff, time.perf_counter() - t0)

            out = v.model.render_progressive(
                c2w, intr, what[2], self.ref_cam(), layers=layers, on_pass=on_pass,
                strides=pass_strides(intr.width * intr.height, self.cost),
                cancel=lambda: self._what() != what or v.stopped.is_set() or not self.alive)
            kind = "full"
        seconds = time.perf_counter() - t0
        if out is None or not self.alive or v.stopped.is_set():
            return seconds
        self._send(self._picture(mode, out), what, intr.height)
        self.stats.add(kind, intr.width, intr.height, seconds)
        if kind == "full" and self._rest[0] == what:
            self.stats.time_to_full = time.monotonic() - self._rest[1]
        self.cost.add(intr.width * intr.height, seconds)
        return seconds

    def _render_compare(self, what, W: int, H: int) -> float | None:
        """Snapped, "real frame" / "split" / "error": the camera's real frame at the scene time and the
        model at that frame's own time, at the dataset's resolution, letterboxed to the canvas."""
        if self.shown is not None and self.shown[0] == what:
            return None
        v = self.viewer
        m = v.model
        src = m.source
        k, mode, s = what[1], what[2], what[3]
        off = float(m.offsets_frames()[k])
        f, inside = real_frame(s, off, src.n_frames)
        intr = src.ds.intrinsics[k]
        t0 = time.perf_counter()
        out = m.render_layers(src.ds.c2w[k], intr, f + off, ref_cam=k,
                              cancel=lambda: self._what() != what or v.stopped.is_set())
        seconds = time.perf_counter() - t0
        if out is None:
            return seconds
        gt = src.image(k, f)
        pred = out["rgb"]
        name = src.camera_names[k]
        self.compare_text = (f"{name} frame **{f}** (scene time {_f2(f + off)}): PSNR **{psnr(pred, gt):.2f} dB**"
                             + ("" if inside else f"  \nscene time {_f2(s)} is outside {name}'s video: its nearest "
                                "frame is shown"))
        self.controls.compare_info.content = self.compare_text
        self._send(letterbox(compose(mode, pred, gt), W / H), what, intr.height)
        self.stats.add("full", intr.width, intr.height, seconds)
        return seconds

    def ref_cam(self) -> int:
        return self.viewer.model.source.test_index if self.snapped is None else self.snapped

    def close(self) -> None:
        self.alive = False


class Viewer:
    """``taichi-syncnerf view``: serve a run at ``http://host:port``."""

    def __init__(self, run, host: str = "127.0.0.1", port: int = 8080, live: bool = False,
                 max_load: float = 1.0, log=print, model: RunModel | None = None, niceness: int = 0):
        viser = require_viser()
        self.log = log
        self.run = Path(run)
        check_port(host, port)
        self.model = RunModel(self.run) if model is None else model
        self._warm_up()
        self.live, self.max_load = live, float(max_load)
        # the start-up (which compiled the kernels) is done: from here every thread, those started
        # later included (viser's server, the render and reload threads), takes only the CPU the
        # training leaves
        lower_process_priority(int(niceness))
        self.stopped = threading.Event()
        self.sessions: dict[int, Session] = {}
        src = self.model.source
        self.rig_scale = rig_scale(src.ds.c2w)
        self.focus_distance = 1.0 if src.ndc else max(float(np.linalg.norm(src.ds.c2w[:, :3, 3], axis=1).mean()), 1e-3)
        self._story()
        self.server = viser.ViserServer(host=host, port=port, label="taichi-syncnerf", verbose=False)
        if port != 0 and self.server.get_port() != port:
            self.server.stop()
            raise UserError(f"port {port} on {host} is taken (another viewer?): choose another with --port")
        self.host, self.port = host, self.server.get_port()
        self.server.gui.configure_theme(control_width="medium", show_share_button=False)
        self.server.gui.main_panel.dock_right()          # the canvas is the part of the page the panel leaves
        self.server.scene.set_up_direction(scene_up(src.ds.c2w))
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)
        self.threads = [threading.Thread(target=self._tick, daemon=True, name="tick")]
        if live:
            self.threads.append(threading.Thread(target=self._poll, daemon=True, name="poll"))
        for t in self.threads:
            t.start()

    @property
    def clients(self) -> dict[int, Session]:
        return self.sessions

    def _warm_up(self) -> None:
        """One tiny render, so that the kernels are compiled before a browser waits for its first frame."""
        src = self.model.source
        fov, aspect = camera_fov(src.ds.intrinsics[src.test_index])
        self.model.render_layers(src.ds.c2w[src.test_index], view_intrinsics(fov, aspect, 8), 0.0,
                                 layers=self.model.depth_note is None)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ----- the run's story (once per checkpoint shown; every browser shows the same)
    def _story(self) -> None:
        from taichi_syncnerf.viewer.story import camera_table_html, offsets_figure, training_figure

        m = self.model
        src = m.source
        offsets, truth = m.offsets_frames(), m.aligned_truth()
        self.rig_cameras = rig_cameras(src, offsets, truth)
        colours = offset_colors(offsets)
        limit = max(0.5, float(np.abs(offsets).max()))
        records = m.log_records()
        self.story = {
            "figures": figures_markdown(str(self.run), m.step, int(m.cfg["train"]["steps"]), m.metrics(),
                                        m.offset_mae(), getattr(self, "live", False)),
            "training": training_figure(records, m.step),
            "offsets": offsets_figure(records, src.camera_names, colours, limit, truth, m.step),
            "table": camera_table_html(src.camera_names, offsets, colours, truth, src.test_index),
        }

    def refresh_panel(self) -> None:
        self._story()
        for s in list(self.sessions.values()):
            s.show_story()

    # ----- clients
    def _connect(self, client) -> None:
        self.sessions[client.client_id] = Session(self, client)

    def _disconnect(self, client) -> None:
        s = self.sessions.pop(client.client_id, None)
        if s is not None:
            s.close()

    # ----- background threads
    def _tick(self) -> None:
        last = time.monotonic()
        while not self.stopped.wait(TICK_S):
            now = time.monotonic()
            for s in list(self.sessions.values()):
                try:
                    s.tick(now - last)
                except Exception as e:            # a browser that left meanwhile
                    self.log(f"viewer: {e!r}")
            last = now

    def _poll(self) -> None:
        while not self.stopped.wait(POLL_S):
            self.reload()

    def reload(self) -> bool:
        """Show the run's newest checkpoint when it is newer than the one shown (the rigs and the
        figures follow); True when it did."""
        before = self.model.ckpt
        if not self.model.poll():
            if self.model.ckpt != before:
                self.log(f"{self.model.ckpt}: not loaded (it does not fit the model shown)")
            return False
        self.refresh_panel()
        self.log(f"showing step {self.model.step}")
        return True

    def stop(self) -> None:
        """Stop the renders (a frame being rendered is abandoned or finished, not sent), then the server."""
        self.stopped.set()
        for s in list(self.sessions.values()):
            s.alive = False
            s.thread.join(10.0)
        self.server.stop()
