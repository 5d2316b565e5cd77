"""Atomic file writes and lock files (stdlib only, usable from every layer): a crash never leaves a partial
file, and a released lock leaves no file behind."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["LockHeld", "atomic_write", "lock_file"]


class LockHeld(OSError):
    """:func:`lock_file` without waiting found the lock held; ``holder`` is what the holder wrote into it."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is held by {holder or 'another process'}")
        self.holder = holder


@contextlib.contextmanager
def lock_file(path: str | os.PathLike[str], *, wait: bool = True, note: str = "") -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created), write ``note`` into it, and remove it on release.

    Removing a lock file is safe only if every taker checks, once it holds the lock, that ``path`` still names
    the file it locked: a process that waited on a file the holder has since removed retries on the new one.
    The holder removes the file while it still holds the lock. Without ``wait`` a held lock raises
    :class:`LockHeld`. (Without ``fcntl``, on Windows, nothing is locked; atomic writes keep files whole.)"""
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        yield
        return
    p = Path(path)
    while True:
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            holder = ""
            with contextlib.suppress(OSError, UnicodeDecodeError):
                holder = p.read_text(encoding="utf-8").strip()
            raise LockHeld(p, holder) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            mine = os.fstat(fd)
            now = os.stat(p)
            if (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino):
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder before us removed the file we waited on: take the current one
    try:
        if note:
            os.ftruncate(fd, 0)
            os.write(fd, note.encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` via a temp file in the same folder, fsync and rename.

    On any failure (disk full, quota, I/O error) ``path`` is untouched, the temp file is removed and the
    ``OSError`` names ``path``: ``[Errno 28] No space left on device: '<path>'``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except OSError as e:
        if e.filename is not None and str(e.filename) == str(p):
            raise
        raise type(e)(e.errno, e.strerror or str(e), str(p)) from e
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return p
