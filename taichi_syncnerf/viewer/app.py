"""The viewer's server: a viser page per browser, rendered by the run's model from the browser's camera.

Each connected browser gets a render thread: while its camera moves (or time plays) it renders at the
"while moving" fraction of the chosen height; once the camera has rested ``SETTLE_S`` seconds it
renders the full height once. A full-height frame is abandoned as soon as the camera moves again.
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
from taichi_syncnerf.viewer.camera import c2w_from_viser, camera_fov, view_intrinsics, viser_pose
from taichi_syncnerf.viewer.live import RunModel
from taichi_syncnerf.viewer.panel import AUTO_FPS, MOVING_SCALES, build_panel, figures_markdown, snapped_index
from taichi_syncnerf.viewer.rig import RigDrawing, rig_cameras, scene_up

SETTLE_S = 0.25         # the camera is "at rest" this long after its last move
POLL_S = 1.0            # live mode: how often the checkpoints folder is looked at


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
    """Durations of the last frames rendered, by kind ("moving" or "full")."""

    def __init__(self, keep: int = 50):
        self.keep = keep
        self.frames: list[dict] = []
        self.lock = threading.Lock()

    def add(self, kind: str, width: int, height: int, seconds: float) -> None:
        with self.lock:
            self.frames = (self.frames + [{"kind": kind, "width": width, "height": height, "s": seconds,
                                           "at": time.time()}])[-self.keep:]

    def summary(self) -> str:
        with self.lock:
            frames = list(self.frames)
        parts = []
        for kind in ("moving", "full"):
            f = [x for x in frames if x["kind"] == kind][-10:]
            if f:
                s = float(np.median([x["s"] for x in f]))
                parts.append(f"{kind} {f[-1]['width']}x{f[-1]['height']}: {s * 1000:.0f} ms ({1 / s:.1f} fps)")
        return " · ".join(parts)


class ClientView:
    """One browser: its camera's last move and a thread that renders for it."""

    def __init__(self, viewer: "Viewer", client):
        self.viewer, self.client = viewer, client
        self.last_move = time.monotonic()
        self.last_view = None           # the view of the last camera message that moved it
        self.last_key = None
        self.frames_sent = 0
        self.last_image: np.ndarray | None = None          # the last frame sent
        self.alive = True
        self.rays_per_s: float | None = None      # measured render speed, for the "auto" moving height
        client.camera.on_update(self._moved)
        self.thread = threading.Thread(target=self._loop, name=f"view-{client.client_id}", daemon=True)
        self.thread.start()

    def _moved(self, _camera) -> None:
        # the browser also sends its camera when nothing moved (a resize of the page, a new panel):
        # only a real move drops to the moving height, or the page would flash a coarse frame
        view = self._view()
        if view != self.last_view:
            self.last_view = view
            self.last_move = time.monotonic()

    def _view(self):
        cam = self.client.camera
        return (tuple(np.round(cam.wxyz, 9)), tuple(np.round(cam.position, 9)), round(float(cam.fov), 9),
                round(float(cam.aspect), 6))

    def _height(self, moving: bool, choice: str, full: int, aspect: float) -> int:
        """Render height: full at rest; while moving a fraction of it, or for "auto" the height whose
        frame takes 1/AUTO_FPS s at the rays per second measured so far."""
        if not moving:
            return full
        scale = MOVING_SCALES[choice]
        if scale is None:
            if self.rays_per_s is None:
                return max(8, min(full, 24))
            return max(8, min(full, int(np.sqrt(self.rays_per_s / AUTO_FPS / aspect))))
        return max(8, int(round(full * scale)))

    def _loop(self) -> None:
        v = self.viewer
        while self.alive and not v.stopped.is_set():
            c = v.controls
            moving = (time.monotonic() - self.last_move < SETTLE_S) or bool(c.playing.value)
            view = self._view()
            height = self._height(moving, str(c.moving.value), int(c.height.value), view[3])
            key = (view, float(c.time.value), height, v.model.version, v.ref_cam())
            if key == self.last_key:
                time.sleep(0.01)
                continue
            wxyz, pos, fov, aspect = view
            intr = view_intrinsics(fov, aspect, height)
            t0 = time.perf_counter()
            cancel = None if moving else (lambda: self._view() != view or v.stopped.is_set())
            img = v.model.render(c2w_from_viser(wxyz, pos), intr, float(c.time.value), v.ref_cam(), cancel=cancel)
            seconds = time.perf_counter() - t0
            if img is None or not self.alive or v.stopped.is_set():
                continue
            u8 = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
            self.client.scene.set_background_image(u8, format="jpeg", jpeg_quality=90)
            self.last_image, self.last_key = u8, key
            self.frames_sent += 1
            v.stats.add("moving" if moving else "full", intr.width, intr.height, seconds)
            rate = intr.width * intr.height / max(seconds, 1e-6)
            self.rays_per_s = rate if self.rays_per_s is None else 0.7 * self.rays_per_s + 0.3 * rate
            if v.max_load < 1.0:
                v.stopped.wait(seconds * (1.0 / v.max_load - 1.0))


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
        self.clients: dict[int, ClientView] = {}
        self.stats = FrameStats()
        self.server = viser.ViserServer(host=host, port=port, label="taichi-syncnerf", verbose=False)
        if port != 0 and self.server.get_port() != port:
            self.server.stop()
            raise UserError(f"port {port} on {host} is taken (another viewer?): choose another with --port")
        self.host, self.port = host, self.server.get_port()
        src = self.model.source
        self.controls = build_panel(self.server.gui, self.run.name, src.n_frames, src.fps, src.camera_names,
                                    src.test_index, src.height)
        self.server.scene.set_up_direction(scene_up(src.ds.c2w))
        self.rig = RigDrawing(self.server.scene, self._rig())
        self._initial_camera(src.test_index)
        self._wire()
        self.refresh_panel()
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)
        self.threads = [threading.Thread(target=self._play, daemon=True, name="play")]
        if live:
            self.threads.append(threading.Thread(target=self._poll, daemon=True, name="poll"))
        for t in self.threads:
            t.start()

    def _warm_up(self) -> None:
        """One tiny render, so that the kernels are compiled before a browser waits for its first frame."""
        src = self.model.source
        fov, aspect = camera_fov(src.ds.intrinsics[src.test_index])
        self.model.render(src.ds.c2w[src.test_index], view_intrinsics(fov, aspect, 8), 0.0)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ----- scene and panel
    def _rig(self):
        return rig_cameras(self.model.source, self.model.offsets_frames(), self.model.aligned_truth())

    def ref_cam(self) -> int:
        k = snapped_index(self.controls, self.model.source.camera_names)
        return self.model.source.test_index if k is None else k

    def refresh_panel(self) -> None:
        m = self.model
        self.controls.figures.content = figures_markdown(
            str(self.run), m.step, int(m.cfg["train"]["steps"]), m.metrics(), m.offset_mae(), self.live)
        self._clock()

    def _clock(self) -> None:
        s = float(self.controls.time.value)
        k = snapped_index(self.controls, self.model.source.camera_names)
        text = f"scene frame **{s:.2f}**"
        if k is not None:
            off = self.model.offsets_frames()[k]
            text += f" = frame **{s - off:.2f}** of {self.model.source.camera_names[k]} (offset {off:+.2f})"
        self.controls.clock.content = text

    def _camera_pose(self, k: int):
        src = self.model.source
        c2w = np.asarray(src.ds.c2w[k], np.float64)
        wxyz, pos = viser_pose(c2w)
        fov, _ = camera_fov(src.ds.intrinsics[k])
        dist = 1.0 if src.ndc else max(float(np.linalg.norm(pos)), 1e-3)
        return wxyz, pos, pos - c2w[:3, 2] * dist, c2w[:3, 1], fov

    def _initial_camera(self, k: int) -> None:
        _, pos, target, up, fov = self._camera_pose(k)
        ic = self.server.initial_camera
        ic.position, ic.look_at, ic.up, ic.fov = tuple(pos), tuple(target), tuple(up), fov

    def snap(self, client, k: int, back: float = 0.0) -> None:
        """Put a browser's camera on dataset camera ``k`` (pose and vertical field of view), or ``back``
        frustum sizes behind it, looking where it looks."""
        _, pos, target, up, fov = self._camera_pose(k)
        pos = pos + np.asarray(self.model.source.ds.c2w[k], np.float64)[:3, 2] * back * self.rig.scale
        with client.atomic():
            client.camera.up_direction = up
            client.camera.position = pos
            client.camera.look_at = target
            client.camera.fov = fov

    def _wire(self) -> None:
        c = self.controls

        @c.snap.on_update
        def _(event):
            k = snapped_index(c, self.model.source.camera_names)
            if k is not None:
                for client in self.server.get_clients().values():
                    self.snap(client, k)
            self._clock()

        c.time.on_update(lambda _e: self._clock())
        c.show_rig.on_update(lambda _e: self.rig.set_visible(bool(c.show_rig.value)))

    # ----- clients
    def _connect(self, client) -> None:
        # a new browser starts behind the test camera, the rig in front of it
        self.snap(client, self.model.source.test_index, back=6.0)
        self.clients[client.client_id] = ClientView(self, client)

    def _disconnect(self, client) -> None:
        view = self.clients.pop(client.client_id, None)
        if view is not None:
            view.alive = False

    # ----- background threads
    def _play(self) -> None:
        last = time.monotonic()
        while not self.stopped.wait(1.0 / 30.0):
            now = time.monotonic()
            c = self.controls
            if c.playing.value:
                top = float(c.time.max)
                s = (float(c.time.value) + float(c.speed.value) * (now - last)) % (top + c.time.step)
                c.time.value = round(min(s, top) / c.time.step) * c.time.step
            last = now
            frames = self.stats.summary()
            if frames and c.frame_info.content != frames:
                c.frame_info.content = frames

    def _poll(self) -> None:
        while not self.stopped.wait(POLL_S):
            self.reload()

    def reload(self) -> bool:
        """Show the run's newest checkpoint when it is newer than the one shown (the rig and the figures
        follow); True when it did."""
        before = self.model.ckpt
        if not self.model.poll():
            if self.model.ckpt != before:
                self.log(f"{self.model.ckpt}: not loaded (it does not fit the model shown)")
            return False
        self.rig.update(self._rig())
        self.refresh_panel()
        self.log(f"showing step {self.model.step}")
        return True

    def stop(self) -> None:
        """Stop the renders (a frame being rendered is abandoned or finished, not sent), then the server."""
        self.stopped.set()
        for view in list(self.clients.values()):
            view.alive = False
            view.thread.join(10.0)
        self.server.stop()
