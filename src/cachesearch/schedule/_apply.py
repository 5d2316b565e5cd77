"""Where the runtime plugs in: :meth:`Schedule.apply` delegates to the applier registered here.

The schedule layer is pure data and imports nothing from the runtime (which needs torch); the runtime
registers its ``apply_schedule`` when :mod:`cachesearch.runtime` is imported. :func:`get_applier` imports
that default runtime by name on first use when nothing is registered yet, so ``import cachesearch`` (and every CLI
command that loads no model) stays free of torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

from ._errors import ScheduleError

__all__ = ["AppliedHandle", "Applier", "get_applier", "register_applier"]


class AppliedHandle(Protocol):
    """What an applier returns: a handle that removes the schedule's hooks, also as a context manager."""

    def remove(self) -> None: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> Any: ...


Applier = Callable[..., AppliedHandle]
"""``applier(schedule, pipe_or_denoiser, **options) -> handle``."""

_applier: Applier | None = None
_DEFAULT_RUNTIME = "cachesearch.runtime"
"""Registers its applier when imported; loaded by name (not imported here: this layer stays torch-free)."""


def register_applier(fn: Applier) -> Applier:
    """Make ``fn`` the function :meth:`Schedule.apply` delegates to (the last registration wins)."""
    global _applier
    if not callable(fn):
        raise TypeError(f"register_applier: expected a callable, got {fn!r}")
    _applier = fn
    return fn


def get_applier() -> Applier:
    """The registered applier (the default runtime is imported on first use); :class:`ScheduleError` when none
    can be."""
    if _applier is None:
        try:
            importlib.import_module(_DEFAULT_RUNTIME)
        except ImportError as e:
            raise ScheduleError(f"Schedule.apply: the runtime cannot be imported ({e}); it needs torch and "
                                f"diffusers") from e
    if _applier is None:
        raise ScheduleError(
            "Schedule.apply: no runtime is registered; `import cachesearch.runtime` (torch + diffusers) first"
        )
    return _applier
