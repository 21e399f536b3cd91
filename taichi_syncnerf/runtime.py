"""The one place where Taichi is initialised.

Nothing in the package initialises Taichi at import time. The command line calls
:func:`init` once with the user's choices; the test suite calls it from a fixture.

Kernels never name a float width: they use ``float`` (Taichi's default float), and
fields are created with ``dtype=float``, so ``precision`` picks f32 or f64 for the
whole program.
"""
from __future__ import annotations

import atexit
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TI_SKIP_VERSION_CHECK", "ON")

ARCHES = ("auto", "cpu", "cuda", "vulkan")
# Taichi's own limit for its kernel cache is 100 MB (least recently used kernels removed past it):
# the project's kernels (train, eval, render, the viewer; f32 and f64; per model kind and field
# shape) fill that, and a kernel removed is compiled again at the next start.
CACHE_MAX_BYTES = 1 << 30
PRECISIONS = ("f32", "f64")


@dataclass(frozen=True)
class RuntimeInfo:
    arch: str  # the backend actually in use: "cpu", "cuda" or "vulkan"
    precision: str
    threads: int | None
    cache_dir: str | None
    requested: str = ""  # the backend asked for ("auto" resolved: "cpu" or "cuda")
    note: str | None = None  # one line when the backend in use is not the one asked for, and why


_state: RuntimeInfo | None = None
_state_atexit = [False]


def _reset_at_exit() -> None:
    if _state is not None:
        import taichi as ti

        try:
            ti.reset()
        except Exception:  # pragma: no cover - best effort at interpreter exit
            pass


def default_cache_dir() -> Path:
    """Per-user cache directory for Taichi's offline kernel cache."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "taichi-syncnerf" / "ticache"


def cuda_available() -> bool:
    """True when an NVIDIA driver is visible, checked without touching Taichi."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    if shutil.which("nvidia-smi") is None and not Path("/proc/driver/nvidia").exists():
        return False
    import ctypes.util

    return ctypes.util.find_library("cuda") is not None or Path("/proc/driver/nvidia").exists()


def resolve_arch(arch: str) -> str:
    if arch not in ARCHES:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHES)}")
    if arch == "auto":
        return "cuda" if cuda_available() else "cpu"
    return arch


def _cache_source_positions() -> None:
    """Remember the source-position text Taichi builds for each syntax node while it turns a kernel
    into its IR: every launch that finds a kernel in the offline cache still runs that conversion,
    a ``ti.func`` is converted again at each call site and a static loop once per iteration, and the
    text (a wrapped copy of the source line with a caret line under it) took 1.8 s of the 7.1 s of
    a profiled ``view --benchmark`` start. The text depends only on the function's source and the
    node's place in it, which the key holds, so kernels, their cache keys and error messages are
    unchanged."""
    from taichi.lang.ast.ast_transformer_utils import ASTTransformerContext

    build = ASTTransformerContext.get_pos_info
    if getattr(build, "_syncnerf_cached", False):
        return
    texts: dict = {}

    def get_pos_info(self, node):
        body = getattr(node, "body", None)
        key = (self.file, self.lineno_offset, self.indent, len(self.src), self.func.func.__name__,
               type(node).__name__, node.lineno, node.end_lineno, node.col_offset, node.end_col_offset,
               body[0].lineno if isinstance(body, list) and body else None)
        text = texts.get(key)
        if text is None:
            text = texts[key] = build(self, node)
        return text

    get_pos_info._syncnerf_cached = True
    get_pos_info.__wrapped__ = build
    ASTTransformerContext.get_pos_info = get_pos_info


def init(
    arch: str = "auto",
    threads: int | None = None,
    precision: str = "f32",
    cache_dir: str | os.PathLike | None = None,
    offline_cache: bool = True,
    debug: bool = False,
    quiet: bool = True,
) -> RuntimeInfo:
    """Initialise Taichi once for the process and return what is in use.

    ``arch``: ``auto`` (CUDA when a GPU is present, else CPU), ``cpu``, ``cuda`` or
    ``vulkan``. The generic GPU, OpenGL and GLES backends are never used: they crash the
    process on machines without a GPU. When a requested GPU backend is unavailable
    Taichi falls back to the CPU: the returned ``arch`` says so and ``note`` says why, in one
    line for the user.
    Calling ``init`` again with the same settings is a no-op; different settings
    reset Taichi (all fields are lost).
    """
    global _state
    import taichi as ti

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose f32 or f64")
    want = resolve_arch(arch)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if _state is not None:
        if (_state.precision, _state.threads, _state.cache_dir) == (
            precision,
            threads,
            str(cache) if offline_cache else None,
        ) and (want == _state.arch or arch == "auto"):
            return _state
        ti.reset()
        _state = None

    kwargs = dict(
        arch={"cpu": ti.cpu, "cuda": ti.cuda, "vulkan": ti.vulkan}[want],
        default_fp=ti.f64 if precision == "f64" else ti.f32,
        default_ip=ti.i32,
        random_seed=0,
        debug=debug,
        log_level=ti.WARN if quiet else ti.INFO,
        offline_cache=offline_cache,
        unrolling_limit=0,
    )
    if offline_cache:
        cache.mkdir(parents=True, exist_ok=True)
        kwargs["offline_cache_file_path"] = str(cache)
        kwargs["offline_cache_max_size_of_files"] = CACHE_MAX_BYTES
    if threads is not None:
        kwargs["cpu_max_num_threads"] = int(threads)
    ti.init(**kwargs)
    _cache_source_positions()
    if offline_cache and not _state_atexit[0]:
        # Taichi writes its offline cache when the program is destroyed; make sure that happens.
        atexit.register(_reset_at_exit)
        _state_atexit[0] = True
    actual = str(ti.lang.impl.current_cfg().arch).split(".")[-1]
    actual = {"x64": "cpu", "arm64": "cpu"}.get(actual, actual)
    _state = RuntimeInfo(actual, precision, threads, str(cache) if offline_cache else None, want,
                         fallback_note(arch, want, actual))
    return _state


def fallback_note(arch: str, want: str, actual: str) -> str | None:
    """One line saying which backend runs and why, when it is not the one asked for."""
    if want == actual:
        return None
    if arch == "auto":
        why = f"--arch auto found an NVIDIA driver, but Taichi could not start {want}"
    else:
        why = f"Taichi could not start --arch {arch} (no usable {want} device or driver here)"
    return f"{why}; running on {actual}"


def info() -> RuntimeInfo:
    if _state is None:
        raise RuntimeError("taichi_syncnerf.runtime.init() has not been called")
    return _state


def is_initialized() -> bool:
    return _state is not None


def np_float():
    """The numpy float type matching the runtime precision."""
    import numpy as np

    return np.float64 if info().precision == "f64" else np.float32
