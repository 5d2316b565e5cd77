"""Where a trial ran: the code revision, and the runner (host, process, session, run directory)."""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["git_revision", "run_dir_id", "runner_attrs"]


@functools.lru_cache(maxsize=1)
def git_revision() -> str | None:
    """``git describe --always --dirty`` of the checkout cachesearch runs from, or None outside a checkout."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True, text=True, timeout=10, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def run_dir_id(run_dir: str | Path) -> str:
    """A run directory's identity in trial attributes: a digest of its resolved path, so a study (which may be
    shared or committed) holds no path of the machine that ran it."""
    return "sha256:" + hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]


def runner_attrs(session: str, run_dir: str | Path) -> dict[str, Any]:
    """Who is running a trial (used to tell orphaned RUNNING trials from live ones)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "session": session, "run_dir": run_dir_id(run_dir)}
