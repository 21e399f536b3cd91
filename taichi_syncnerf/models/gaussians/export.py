"""The standard 3DGS ``.ply`` of a set of Gaussians (GAUSSIAN_REFERENCE.md section 9).

Binary little-endian, one ``vertex`` element of float32 properties in this order: ``x y z``,
``nx ny nz`` (zeros), ``f_dc_0..2`` (the SH DC of R, G, B), ``f_rest_0..`` channel-major (all
coefficients 1..K-1 of red, then green, then blue: 3DGS's ``save_ply``), ``opacity`` (logit),
``scale_0..2`` (log), ``rot_0..3`` (w, x, y, z, unnormalised). Written atomically.

:func:`read_ply` parses such a file back (header and rows, numpy only) into the same arrays.

Example::

    write_ply("frame.ply", model.gaussians_at(time))     # arrays as GaussianCloud.get() gives
    arrays = read_ply("frame.ply")
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from taichi_syncnerf.errors import UserError


def property_names(n_rest: int) -> list[str]:
    """The vertex properties for ``n_rest`` f_rest values (3 (K - 1))."""
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(n_rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def rows_of(arrays: dict) -> np.ndarray:
    """(N, P) float32 rows of the .ply from Gaussian arrays (``sh_rest`` column ``3 (k-1) + c``)."""
    n = len(arrays["means"])
    rest = np.asarray(arrays["sh_rest"], np.float64).reshape(n, -1, 3)       # (N, K-1, 3)
    rest_channel_major = rest.transpose(0, 2, 1).reshape(n, -1)              # (N, 3 (K-1)): R..., G..., B...
    return np.concatenate([np.asarray(arrays["means"], np.float64), np.zeros((n, 3)),
                           np.asarray(arrays["sh_dc"], np.float64), rest_channel_major,
                           np.asarray(arrays["opacity"], np.float64).reshape(n, 1),
                           np.asarray(arrays["log_scales"], np.float64), np.asarray(arrays["quats"], np.float64)],
                          axis=1).astype("<f4")


def write_ply(path, arrays: dict) -> Path:
    """Write ``arrays`` (``means``, ``sh_dc``, ``sh_rest``, ``opacity``, ``log_scales``, ``quats``)
    as a 3DGS .ply at ``path``, atomically."""
    import os

    from taichi_syncnerf.io_utils import atomic_path

    rows = rows_of(arrays)
    names = property_names(rows.shape[1] - 17)
    header = ("ply\nformat binary_little_endian 1.0\n" + f"element vertex {len(rows)}\n"
              + "".join(f"property float {p}\n" for p in names) + "end_header\n")
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(header.encode("ascii"))
            f.write(rows.tobytes())
            f.flush()
            os.fsync(f.fileno())
    return path


def read_ply(path) -> dict:
    """Gaussian arrays (float64) of a 3DGS .ply written as :func:`write_ply` writes it."""
    data = Path(path).read_bytes()
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply\n") or end < 0:
        raise UserError(f"{path}: not a .ply file")
    lines = data[:end].decode("ascii").splitlines()
    if "format binary_little_endian 1.0" not in lines:
        raise UserError(f"{path}: not a binary little-endian .ply")
    count = next(int(ln.split()[2]) for ln in lines if ln.startswith("element vertex"))
    props = [ln.split() for ln in lines if ln.startswith("property")]
    if any(p[1] != "float" for p in props):
        raise UserError(f"{path}: expected float32 vertex properties only")
    names = [p[2] for p in props]
    body = data[end + len(b"end_header\n"):]
    if len(body) != count * len(names) * 4:
        raise UserError(f"{path}: {len(body)} bytes of rows, expected {count * len(names) * 4}")
    rows = np.frombuffer(body, "<f4").reshape(count, len(names)).astype(np.float64)
    col = {name: rows[:, i] for i, name in enumerate(names)}
    n_rest = sum(1 for name in names if name.startswith("f_rest_"))
    rest = np.stack([col[f"f_rest_{i}"] for i in range(n_rest)], 1) if n_rest else np.zeros((count, 0))
    return {"means": np.stack([col["x"], col["y"], col["z"]], 1),
            "sh_dc": np.stack([col[f"f_dc_{i}"] for i in range(3)], 1),
            "sh_rest": rest.reshape(count, 3, -1).transpose(0, 2, 1).reshape(count, -1),
            "opacity": col["opacity"], "log_scales": np.stack([col[f"scale_{i}"] for i in range(3)], 1),
            "quats": np.stack([col[f"rot_{i}"] for i in range(4)], 1), "names": names}


def export_run(run, out, time: float | None = None, all_frames: bool = False, progress: bool = False) -> list:
    """Write the Gaussians of the sync-4dgs run ``run`` deformed at scene time ``time`` (frames of
    the scene clock, the test camera's) to the .ply ``out``, or (``all_frames``) one file per frame
    ``out/frame_00000.ply``...; returns the paths written. Another model kind is a one-line error."""
    from taichi_syncnerf import timeline
    from taichi_syncnerf.run_folder import RunFolder, open_run

    folder = RunFolder.open(run)
    kind = folder.config()["model"]["kind"]
    if kind != "sync-4dgs":
        raise UserError(f"{run}: a {kind} run has no Gaussians to export (export needs a sync-4dgs run)")
    opened = open_run(run, folder=folder)
    n_frames = opened.source.n_frames
    if all_frames:
        frames = list(range(n_frames))
        paths = [Path(out) / f"frame_{f:05d}.ply" for f in frames]
    else:
        if time is None or not 0.0 <= float(time) <= n_frames - 1:
            raise UserError(f"--time {time} is outside the video's frames 0..{n_frames - 1}")
        frames, paths = [float(time)], [Path(out)]
    from tqdm import tqdm

    for f, path in tqdm(list(zip(frames, paths)), disable=not progress, desc="export", dynamic_ncols=True):
        write_ply(path, opened.model.gaussians_at(float(timeline.frame_time(f, n_frames))))
    return paths
