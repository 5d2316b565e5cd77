"""Atomic file writes (stdlib only, usable from every layer): a crash never leaves a partial file."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

__all__ = ["atomic_write"]


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
