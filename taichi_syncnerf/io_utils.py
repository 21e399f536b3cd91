"""Atomic file output: write to a temporary file beside the target, then rename.

Faults while writing:

- a full disk, a quota or a file-size limit (ENOSPC, EDQUOT, EFBIG; ``ulimit -f`` also sends
  SIGXFSZ, which the command line ignores so that the write fails with EFBIG instead of killing
  the process: :func:`ignore_file_size_signal`), a read-only or forbidden folder (EROFS, EACCES,
  EPERM) become one :class:`~taichi_syncnerf.errors.UserError` naming the file; the temporary is
  removed and the previous file is unchanged;
- a writer killed outright (``kill -9``, power loss) cannot remove its temporary. Temporaries are
  named ``.<name>.<host>-<pid>.<random>.tmp<suffix>``: the next atomic write into the same folder
  removes those whose process on this host is gone (:func:`remove_stale_temporaries`), so they
  never pile up; being hidden, they are never taken for outputs meanwhile.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from taichi_syncnerf.errors import UserError

_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
_TMP_NAME = re.compile(r"^\..+\.(?P<host>[0-9a-f]{6})-(?P<pid>\d+)\.[^./]+\.tmp[^/]*$")

# errno -> what to tell the user
WRITE_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large (the file system's or the process's file size limit, ulimit -f)",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def ignore_file_size_signal() -> None:
    """Let a write past the file size limit (``ulimit -f``) fail with EFBIG, which the writers report
    in one line, instead of SIGXFSZ killing the process. Call from the main thread (the CLI does)."""
    try:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    except (AttributeError, ValueError, OSError):  # no SIGXFSZ here, or not the main thread
        pass


def write_error(path: str | os.PathLike, e: OSError) -> UserError | None:
    """The one-line error for an OSError ``e`` met while writing ``path``, or None when ``e`` is not a
    write fault of the disk or the folder (see :data:`WRITE_ERRORS`)."""
    what = WRITE_ERRORS.get(getattr(e, "errno", None))
    if what is None:
        return None
    path = Path(path)
    kept = f"; the previous {path.name} is unchanged" if path.exists() else ""
    return UserError(f"{path}: cannot write it: {what}{kept}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of atomic writes (files, and ``prepare``'s staging folders) in ``folder``
    whose writer on this host is gone (killed before it could rename or remove them). Returns what
    was removed; never raises."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TMP_NAME.match(entry.name)
        if m is None or m["host"] != _HOST or int(m["pid"]) == os.getpid() or _alive(int(m["pid"])):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)       # a staging folder (prepare)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def temporary_prefix(name: str) -> str:
    """The prefix of this process's temporaries for a target called ``name`` (see the module doc)."""
    return f".{name}.{_HOST}-{os.getpid()}."


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched, so a reader never
    sees a half-written output; a full disk or a forbidden folder is a one-line UserError naming
    ``path`` (:func:`write_error`). Temporaries of killed writers in the folder are removed first.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent)
        sfx = suffix if suffix is not None else "".join(path.suffixes[-1:])
        fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path.name), suffix=f".tmp{sfx}", dir=path.parent)
        os.close(fd)
    except OSError as e:             # the folder cannot be made or written: always the target's fault
        raise (write_error(path, e) or UserError(f"{path}: cannot write it: {e.strerror or e}")) from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the output the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException as e:
        tmp_path.unlink(missing_ok=True)
        # inside the block only the disk's faults: a permission error there may be a read of the caller's
        err = write_error(path, e) if isinstance(e, OSError) and e.errno in SPACE_ERRNOS else None
        if err is None:
            raise
        raise err from None


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
