"""Where the runtime plugs in: :meth:`Schedule.apply` delegates to the applier registered here.

The schedule layer is pure data and imports nothing from the runtime (which needs torch); the runtime
registers its ``apply_schedule`` when :mod:`cachesearch.runtime` is imported (``import cachesearch`` does it).
"""

from __future__ import annotations

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


def register_applier(fn: Applier) -> Applier:
    """Make ``fn`` the function :meth:`Schedule.apply` delegates to (the last registration wins)."""
    global _applier
    if not callable(fn):
        raise TypeError(f"register_applier: expected a callable, got {fn!r}")
    _applier = fn
    return fn


def get_applier() -> Applier:
    """The registered applier; :class:`ScheduleError` when none is."""
    if _applier is None:
        raise ScheduleError(
            "Schedule.apply: no runtime is registered; `import cachesearch.runtime` (torch + diffusers) first"
        )
    return _applier
