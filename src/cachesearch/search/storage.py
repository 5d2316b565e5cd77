"""Where a run's study is stored: the journal file in its run directory or an RDB server (``--storage``), how run
files name it, and the lock that keeps one driver per run directory."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._atomic import LockHeld, lock_file
from .redact import hide_password, without_secret
from .settings import RunSettings, SearchError

__all__ = ["JOURNAL_NAME", "open_storage", "relative_storage", "run_lock", "storage_spec"]

JOURNAL_NAME = "study.journal"


def storage_spec(settings: RunSettings) -> str:
    """The storage a run uses: ``--storage`` or the journal file in its run directory (absolute path)."""
    if settings.storage:
        return settings.storage
    return str((settings.run_dir / JOURNAL_NAME).resolve())


def relative_storage(spec: str, run_dir: Path) -> str:
    """How files of the run name its storage: a URL as given, a journal path relative to the run directory
    (``study.journal``), so no file written into a run holds an absolute path of this machine."""
    if "://" in spec:
        return spec
    return os.path.relpath(Path(spec).expanduser().resolve(), Path(run_dir).expanduser().resolve())


def open_storage(spec: str) -> Any:
    """An Optuna storage for ``spec``: an RDB URL (``postgresql://…``, ``mysql://…``, ``sqlite:///…``) or the
    path of a journal file (safe for processes on one host; not on NFS). A server URL (not SQLite) gets
    :func:`~.rdb.open_rdb`: heartbeats, retries while the server is unreachable, and mask claims, so many
    ``cachesearch run`` processes on many hosts can share the study."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if "://" in spec:
        try:
            if spec.startswith("sqlite"):
                return optuna.storages.RDBStorage(spec)
            from .rdb import open_rdb

            return open_rdb(spec)  # many processes or hosts: heartbeats, claims, retries
        except Exception as e:  # noqa: BLE001 - driver missing, bad URL, server down; never echo a password
            raise SearchError(f"--storage: cannot open {hide_password(spec)!r}: {type(e).__name__}: "
                              f"{without_secret(str(e), spec)}") from None
    path = Path(spec).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on a run directory: one driver per run at a time (released on any exit; the lock
    file ``.lock`` is removed with it)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / ".lock"
    try:
        with lock_file(path, wait=False, note=f"pid {os.getpid()} on {socket.gethostname()}"):
            yield
    except LockHeld as e:
        raise SearchError(
            f"run {run_dir.name!r} is already being searched by {e.holder or 'another process'} (lock {path}); "
            f"wait for it to finish, or add workers with --executor ray"
        ) from None
