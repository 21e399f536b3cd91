"""On-disk uint8 frame cache: decoded once, memory-mapped afterwards.

Location (:func:`cache_dir_for`): ``cache_dir`` when given, else ``$TAICHI_SYNCNERF_CACHE_DIR/<id>``,
else ``DATA/.cache/`` when the dataset folder is writable, else
``~/.cache/taichi-syncnerf/frames/<id>`` (``<id>`` = hash of the dataset's absolute path).

One cache per dataset, downsampling factor, frame range (and background, for RGBA PNG frames):

- ``frames_<key>.u8``: raw uint8 array of shape (C, F, H, W, 3), C-order (camera, frame, row,
  column, RGB), no header, so it can be memory-mapped directly;
- ``frames_<key>.json``: manifest with the shape, the options, the camera names and a source
  fingerprint (size and mtime of every video / PNG / metadata file). A changed dataset or a data file
  of the wrong size makes the cache stale and it is rebuilt.

The build streams one frame at a time into a temporary file that is renamed into place, then writes
the manifest (also atomically): RAM stays at a few frames whatever the dataset size, and an
interrupted build leaves nothing a later run would trust. ``probes.json`` memoises video probes
(frame count, size, fps) keyed by file size and mtime, so opening an unchanged dataset decodes nothing.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path

import numpy as np

from taichi_syncnerf.data.loaders import SceneSource
from taichi_syncnerf.data import sources
from taichi_syncnerf.data.sources import iter_frames
from taichi_syncnerf.errors import DataError, UserError
from taichi_syncnerf.io_utils import atomic_path, write_json_atomic

FORMAT_VERSION = 1
ENV_CACHE_DIR = "TAICHI_SYNCNERF_CACHE_DIR"


def cache_dir_for(root: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The folder holding the caches of the dataset in ``root`` (see the module docstring)."""
    if cache_dir is not None:
        return Path(cache_dir)
    root = Path(root).resolve()
    tag = f"{root.name}-{hashlib.sha1(str(root).encode()).hexdigest()[:12]}"
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR]) / tag
    local = root / ".cache"
    if (local.is_dir() and os.access(local, os.W_OK)) or (not local.exists() and os.access(root, os.W_OK)):
        return local
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "taichi-syncnerf" / "frames" / tag


class ProbeMemo:
    """``path -> (n_frames, height, width, fps)`` memoised in ``probes.json`` by file size and mtime."""

    def __init__(self, cache_dir: Path, probe=None):
        self.path = Path(cache_dir) / "probes.json"
        self._probe = probe
        self.dirty = False
        try:
            self.table = json.loads(self.path.read_text())
            if not isinstance(self.table, dict):
                self.table = {}
        except (OSError, ValueError):
            self.table = {}

    def __call__(self, path: Path):
        st = Path(path).stat()
        key = str(Path(path).resolve())
        hit = self.table.get(key)
        if isinstance(hit, list) and len(hit) == 6 and hit[:2] == [st.st_size, st.st_mtime_ns]:
            return tuple(hit[2:])
        n, h, w, fps = (self._probe or sources.default_probe)(Path(path))
        self.table[key] = [st.st_size, st.st_mtime_ns, int(n), int(h), int(w), float(fps)]
        self.dirty = True
        return int(n), int(h), int(w), float(fps)

    def save(self) -> None:
        if self.dirty:
            try:
                write_json_atomic(self.path, self.table)
            except (OSError, UserError):
                pass  # a read-only or full cache folder only costs a re-probe next time
            self.dirty = False


def source_fingerprint(scene: SceneSource) -> list:
    """Sizes and mtimes of every file the frames and poses come from."""
    metas = []
    for p in scene.meta_files:
        st = p.stat()
        metas.append([p.name, st.st_size, st.st_mtime_ns])
    return metas + [cam.fingerprint() for cam in scene.cameras]


def cache_key(downsample: int, start: int, stop: int, background, png: bool) -> str:
    key = f"ds{downsample}_f{start}-{stop}"
    if png:
        key += "_bg" + "".join(f"{int(round(255 * c)):02x}" for c in background)
    return key


class FrameCache:
    """A built cache: ``frames`` is a read-only memmap (C, F, H, W, 3) uint8.

    Example:
        >>> cache = open_cache(manifest_path, fingerprint, expect)   # doctest: +SKIP
        >>> rgb = cache.gather(cam, frame, x, y)                      # (N, 3) uint8
    """

    def __init__(self, data_path: Path, manifest: dict):
        self.data_path = Path(data_path)
        self.manifest = manifest
        self.shape = tuple(manifest["shape"])
        self.frames = np.memmap(self.data_path, dtype=np.uint8, mode="r", shape=self.shape)
        self._flat = self.frames.reshape(-1, 3)

    @property
    def build_id(self) -> str:
        return self.manifest["build_id"]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))

    @property
    def stem(self) -> Path:
        """Path prefix for files derived from this cache (preprocessing)."""
        return self.data_path.with_suffix("")

    def gather(self, cam: np.ndarray, frame: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """RGB of pixels ``(x, y)`` of ``frame`` of ``cam`` (cache-local indices).

        Args:
            cam, frame, x, y: (N,) integer arrays.
        Returns:
            (N, 3) uint8.
        """
        _, nf, h, w, _ = self.shape
        idx = ((np.asarray(cam, np.int64) * nf + frame) * h + y) * w + x
        return self._flat[idx]


def open_cache(manifest_path: Path, fingerprint: list, expect: dict) -> FrameCache | None:
    """The cache described by ``manifest_path`` if it is complete and up to date, else None."""
    try:
        manifest = json.loads(Path(manifest_path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        return None
    if manifest.get("fingerprint") != fingerprint:
        return None
    if any(manifest.get(k) != v for k, v in expect.items()):
        return None
    name = manifest.get("data_file")
    if not isinstance(name, str) or not name or "/" in name:
        return None
    data_path = Path(manifest_path).with_name(name)
    try:
        if data_path.stat().st_size != int(np.prod(manifest["shape"])):
            return None
    except (OSError, KeyError, TypeError):
        return None
    return FrameCache(data_path, manifest)


def build_cache(scene: SceneSource, manifest_path: Path, fingerprint: list, expect: dict,
                downsample: int, start: int, stop: int, background, progress: bool = False
                ) -> FrameCache:
    """Decode every camera's frames ``start..stop-1`` into a new cache (see the module docstring)."""
    manifest_path = Path(manifest_path)
    data_path = manifest_path.with_suffix(".u8")
    h, w = scene.height // downsample, scene.width // downsample
    shape = (len(scene.cameras), stop - start, h, w, 3)
    nbytes = int(np.prod(shape))
    try:
        manifest_path.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(manifest_path.parent).free
    except OSError as e:
        raise DataError(f"{manifest_path.parent}: cannot create the cache folder ({e.strerror or e}); "
                        "choose another cache folder") from None
    if free < nbytes + (64 << 20):
        raise DataError(f"{manifest_path.parent}: not enough disk space for the frame cache "
                        f"({nbytes / 2**30:.2f} GiB needed, {free / 2**30:.2f} GiB free); "
                        "choose another cache folder or a larger downsampling factor")
    t0 = time.perf_counter()
    bar = _progress(progress, shape[0] * shape[1], f"caching {scene.root.name}")
    try:
        with atomic_path(data_path, suffix=".u8") as tmp, bar:
            with open(tmp, "wb") as f:
                for cam in scene.cameras:
                    _write_camera(f, cam, shape, start, stop, downsample, background, bar)
                f.flush()
                os.fsync(f.fileno())
    except OSError as e:
        raise DataError(f"{data_path}: cannot write the frame cache ({e.strerror or e})") from None
    manifest = dict(expect)
    manifest.update({
        "format": FORMAT_VERSION, "build_id": uuid.uuid4().hex, "data_file": data_path.name,
        "shape": list(shape), "dtype": "uint8", "layout_order": "camera,frame,row,column,rgb",
        "cameras": [c.name for c in scene.cameras], "fingerprint": fingerprint,
        "build_seconds": round(time.perf_counter() - t0, 3),
    })
    write_json_atomic(manifest_path, manifest)
    return FrameCache(data_path, manifest)


def _write_camera(f, cam, shape, start, stop, downsample, background, bar) -> None:
    """Append one camera's frames to the open cache file, checking their size and count."""
    h, w = shape[2:4]
    got = 0
    for frame in iter_frames(cam, start, stop, downsample, background):
        if frame.shape != (h, w, 3):
            raise DataError(f"{cam.path}: a frame decodes to {frame.shape[1]}x{frame.shape[0]}, "
                            f"expected {w}x{h}")
        f.write(np.ascontiguousarray(frame).tobytes())
        got += 1
        bar.update(1)
    if got != stop - start:
        raise DataError(f"{cam.path}: truncated: only {got} of the {stop - start} frames "
                        f"{start}..{stop - 1} could be decoded")


class _NoBar:
    def update(self, n):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _progress(enabled: bool, total: int, desc: str):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", leave=False)
