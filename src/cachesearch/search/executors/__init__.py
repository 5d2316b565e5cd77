"""Executors run a prepared run's trial loop: ``local`` (in this process) and ``ray`` (Ray Tune workers).

Both depend only on :mod:`.base`; :func:`get` loads the Ray executor (and ray) only when it is asked for.
"""

from __future__ import annotations

from .base import Executor, LoopResult, Prepared, Progress, record_outcome
from .local import run_local

__all__ = ["Executor", "LoopResult", "Prepared", "Progress", "get", "record_outcome"]


def get(name: str) -> Executor:
    """The executor named by ``--executor`` (``local`` or ``ray``)."""
    if name == "ray":
        from .ray import run_ray  # imports ray: loaded only for Ray runs

        return run_ray
    if name == "local":
        return run_local
    raise ValueError(f"--executor: expected 'local' or 'ray', got {name!r}")
