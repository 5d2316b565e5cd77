"""Executors run a prepared run's trial loop: ``local`` (in this process, or a pool of worker processes with
``--workers`` > 1) and ``ray`` (Ray Tune workers).

They depend only on :mod:`.base` (and the shared :mod:`.worker`); :func:`get` loads the Ray executor (and ray)
only when it is asked for.
"""

from __future__ import annotations

from .base import Executor, LoopResult, Prepared, Progress, record_outcome
from .local import run_local

__all__ = ["Executor", "LoopResult", "Prepared", "Progress", "get", "record_outcome"]


def run_local_or_pool(prep: Prepared, progress: Progress) -> LoopResult:
    """The local executor: the in-process loop, or the process pool (:func:`~.pool.run_pool`) with
    ``--workers`` > 1."""
    if prep.settings.workers > 1:
        from .pool import run_pool

        return run_pool(prep, progress)
    return run_local(prep, progress)


def get(name: str) -> Executor:
    """The executor named by ``--executor`` (``local`` or ``ray``)."""
    if name == "ray":
        from .ray import run_ray  # imports ray: loaded only for Ray runs

        return run_ray
    if name == "local":
        return run_local_or_pool
    raise ValueError(f"--executor: expected 'local' or 'ray', got {name!r}")
