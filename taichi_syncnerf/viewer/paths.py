"""The camera path editor of one browser: keyframes of the view's pose and the scene time, a preview
that flies the view along the path, and ``camera_path.json`` saved and loaded
(:mod:`taichi_syncnerf.camera_path`; ``taichi-syncnerf render RUN --camera-path FILE`` renders it).

A keyframe takes the browser camera's pose and vertical field of view and the time slider's scene
time when it is added (or set again with "set to view"); its time can also be typed. Time is free of
the camera: two keyframes at one time freeze the scene while the camera moves (bullet time), times
closer together than the path's seconds play the scene slowly, decreasing times play it backwards.
The keyframes are drawn in the scene (small frusta and the interpolated path).
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from taichi_syncnerf.camera_path import (SMOOTHNESS, Keyframe, interpolate, keyframes_in_model, make_path,
                                         read_path, world_from_source, write_path)
from taichi_syncnerf.errors import UserError
from taichi_syncnerf.viewer.camera import viser_pose

NO_KEYFRAME = "(none)"
PATH_COLOUR = (230, 160, 20)


class PathEditor:
    """Keyframes and the path's settings of one browser (its ``session``: a viewer Session)."""

    def __init__(self, session, gui, scene, folder, default_file: Path, width: int, height: int, fps: float):
        self.session, self.scene = session, scene
        self.keyframes: list[Keyframe] = []
        self.previewing, self.preview_t = False, 0.0
        self._handles = []
        self._draw_lock = threading.Lock()          # callbacks of two inputs may redraw at once
        with folder:
            self.status = gui.add_markdown("no keyframes: move the view and the time, then **add keyframe**")
            self.add = gui.add_button("add keyframe", hint="The view's pose and field of view, the scene time now")
            self.selected = gui.add_dropdown("keyframe", [NO_KEYFRAME], initial_value=NO_KEYFRAME)
            self.key_time = gui.add_number("keyframe scene time", 0.0, step=0.05,
                                           hint="The scene time (frames) this keyframe shows: time is free of "
                                           "the camera (equal times: bullet time; decreasing: reverse)")
            self.actions = gui.add_button_group("selected keyframe", ["go to", "set to view", "delete"])
            self.seconds = gui.add_number("seconds", 4.0, min=0.1, max=600.0, step=0.1)
            self.fps = gui.add_number("fps", float(round(fps)) if fps >= 1 else 30.0, min=1.0, max=120.0, step=1.0)
            self.smoothness = gui.add_dropdown("positions", list(SMOOTHNESS), initial_value="spline")
            self.loop = gui.add_checkbox("loop path", initial_value=False,
                                         hint="The path returns to its first keyframe")
            self.width = gui.add_number("output width", int(width), min=8, max=8192, step=1)
            self.height = gui.add_number("output height", int(height), min=8, max=8192, step=1)
            self.preview = gui.add_button("preview", hint="Fly the view along the path (click again to stop)")
            self.file = gui.add_text("file", str(default_file))
            self.save_load = gui.add_button_group("camera_path.json", ["save", "load"])
            self.message = gui.add_markdown("")
        self.add.on_click(lambda _e: self.add_keyframe())
        self.selected.on_update(lambda _e: self._selected_changed())
        self.key_time.on_update(lambda _e: self._time_typed())
        self.actions.on_click(lambda e: self._action(e.target.value))
        for h in (self.seconds, self.fps, self.smoothness, self.loop):
            h.on_update(lambda _e: self.redraw())
        self.preview.on_click(lambda _e: self.toggle_preview())
        self.save_load.on_click(lambda e: self.save() if e.target.value == "save" else self.load())

    # ----- keyframes
    @property
    def index(self) -> int | None:
        v = str(self.selected.value)
        return None if v == NO_KEYFRAME else int(v.split(":")[0]) - 1

    def _names(self) -> list[str]:
        return [f"{i + 1}: t={k.time:.2f}" for i, k in enumerate(self.keyframes)] or [NO_KEYFRAME]

    def _refresh_list(self, select: int | None) -> None:
        names = self._names()
        self.selected.options = names
        self.selected.value = names[select] if select is not None and self.keyframes else names[-1]
        self.redraw()

    def add_keyframe(self) -> int:
        """The view now (pose, field of view, scene time) as a keyframe after the selected one."""
        c2w, fov_deg = self.session.view_pose()
        key = Keyframe(c2w, fov_deg, float(self.session.controls.time.value))
        i = len(self.keyframes) if self.index is None else self.index + 1
        self.keyframes.insert(i, key)
        self._refresh_list(i)
        return i

    def _selected_changed(self) -> None:
        i = self.index
        if i is not None and i < len(self.keyframes):
            self.key_time.value = round(float(self.keyframes[i].time), 4)

    def _time_typed(self) -> None:
        i = self.index
        if i is None or i >= len(self.keyframes):
            return
        t = float(self.key_time.value)
        if t != self.keyframes[i].time:
            k = self.keyframes[i]
            self.keyframes[i] = Keyframe(k.c2w, k.fov, t)
            self._refresh_list(i)

    def _action(self, what: str) -> None:
        i = self.index
        if i is None or i >= len(self.keyframes):
            return
        if what == "go to":
            k = self.keyframes[i]
            self.session.set_view(k.c2w, np.radians(k.fov))
            self.session.controls.time.value = self.session.clamp_time(k.time)
        elif what == "set to view":
            c2w, fov_deg = self.session.view_pose()
            self.keyframes[i] = Keyframe(c2w, fov_deg, float(self.session.controls.time.value))
            self._refresh_list(i)
        elif what == "delete":
            del self.keyframes[i]
            self._refresh_list(min(i, len(self.keyframes) - 1) if self.keyframes else None)

    # ----- the path
    def n_frames(self) -> int:
        return max(1, int(round(float(self.fps.value) * float(self.seconds.value))))

    def cameras(self):
        """(c2w, fov degrees, time) of every output frame (model world)."""
        return interpolate(self.keyframes, self.n_frames(), str(self.smoothness.value), bool(self.loop.value))

    def redraw(self) -> None:
        with self._draw_lock:
            self._redraw()

    def _redraw(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        n = len(self.keyframes)
        text = f"{n} keyframe{'s' if n != 1 else ''}"
        if n:
            text += (f" · {float(self.seconds.value):g} s at {float(self.fps.value):g} fps = {self.n_frames()} frames"
                     f" · scene time {self.keyframes[0].time:.2f} → {self.keyframes[-1].time:.2f}")
        self.status.content = text
        scale = self.session.viewer.rig_scale * 0.6
        for i, k in enumerate(self.keyframes):
            wxyz, pos = viser_pose(k.c2w)
            aspect = float(self.width.value) / float(self.height.value)
            self._handles.append(self.scene.add_camera_frustum(
                f"/path/key{i}", fov=float(np.radians(k.fov)), aspect=aspect, scale=scale, color=PATH_COLOUR,
                wxyz=wxyz, position=pos, thickness=scale * 0.04))
        if n >= 2:
            c2w, _, _ = self.cameras()
            p = c2w[:, :3, 3]
            seg = np.stack([p[:-1], p[1:]], axis=1)
            self._handles.append(self.scene.add_line_segments("/path/line", seg, PATH_COLOUR, thickness=3.0,
                                                              thickness_units="screen"))

    # ----- preview
    def toggle_preview(self) -> None:
        if self.previewing:
            self.stop_preview()
        elif self.keyframes:
            self.session._unsnap()
            self.previewing, self.preview_t = True, 0.0
            self.preview.label = "stop preview"
            self._preview_cams = self.cameras()

    def stop_preview(self) -> None:
        self.previewing = False
        self.preview.label = "preview"

    def tick(self, dt: float) -> None:
        """Advance the preview by ``dt`` seconds: the view and the time follow the path (it repeats)."""
        if not self.previewing:
            return
        c2w, fov, times = self._preview_cams
        i = int(self.preview_t * float(self.fps.value)) % len(times)
        self.preview_t += dt
        self.session.set_view(c2w[i], np.radians(fov[i]))
        self.session.controls.time.value = self.session.clamp_time(times[i])

    # ----- the file
    def _path_file(self) -> Path:
        return Path(str(self.file.value).strip()).expanduser()

    def save(self) -> Path | None:
        if not self.keyframes:
            self.message.content = "add a keyframe first"
            return None
        src = self.session.viewer.model.source
        try:
            cp = make_path(self.keyframes, world_from_source(src), int(self.width.value), int(self.height.value),
                           float(self.fps.value), float(self.seconds.value), str(self.smoothness.value),
                           bool(self.loop.value))
            f = write_path(self._path_file(), cp)
        except (UserError, OSError) as e:
            self.message.content = f"not saved: {e}"
            return None
        self.message.content = (f"saved {len(cp)} frames to `{f}`; render them with  \n"
                                f"`taichi-syncnerf render {self.session.viewer.run} --camera-path {f} --out path.mp4`")
        return f

    def load(self) -> bool:
        src = self.session.viewer.model.source
        try:
            cp = read_path(self._path_file())
        except UserError as e:
            self.message.content = f"not loaded: {e}"
            return False
        self.keyframes = keyframes_in_model(cp, world_from_source(src))
        self.stop_preview()
        self.fps.value = float(cp.fps)
        self.seconds.value = round(float(cp.seconds), 3)
        self.smoothness.value = cp.smoothness
        self.loop.value = bool(cp.loop)
        self.width.value, self.height.value = int(cp.width), int(cp.height)
        self._refresh_list(0)
        self.message.content = f"loaded {len(self.keyframes)} keyframes from `{self._path_file()}`"
        return True
