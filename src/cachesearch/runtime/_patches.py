"""Per-instance attribute patches (block forwards, scheduler and pipeline methods) and their exact undo."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ..schedule import ScheduleError

__all__ = ["Patches"]


class Patches:
    """The attributes one applied schedule replaced; :meth:`restore` puts every original back exactly.

    A hook installed on a patched block *after* us (diffusers' ``HookRegistry``, e.g. block-level group
    offloading, or accelerate's ``add_hook_to_module``) wraps our wrapper: it is kept, and our wrapper is taken
    out from under it. Anything else that replaced a patched attribute makes :meth:`restore` raise
    :class:`ScheduleError` before anything is restored, so it can be called again once that is undone.
    """

    def __init__(self, describe: Callable[[Any], str] = lambda obj: type(obj).__name__) -> None:
        self._records: list[tuple[Any, str, bool, Callable, Callable]] = []  # obj, attr, had_attr, original, ours
        self._describe = describe

    def patch(self, obj: Any, attr: str, make: Callable[[Callable], Callable]) -> None:
        """Replace ``obj.attr`` on the instance by ``make(original)`` (signature kept)."""
        had_attr = attr in obj.__dict__
        original = getattr(obj, attr)
        wrapper = functools.wraps(original)(make(original))
        setattr(obj, attr, wrapper)
        self._records.append((obj, attr, had_attr, original, wrapper))

    def restore(self) -> None:
        """Undo every patch, newest first (all checked before any is undone)."""
        splices = [self._splice_plan(obj, attr, wrapper) for obj, attr, _, _, wrapper in self._records]
        for (obj, attr, had_attr, original, _), splice in zip(reversed(self._records), reversed(splices)):
            if splice is not None:
                splice(original)
            elif had_attr:
                setattr(obj, attr, original)
            else:
                obj.__dict__.pop(attr, None)
        self._records.clear()

    def _splice_plan(self, obj: Any, attr: str, wrapper: Callable) -> Callable[[Callable], None] | None:
        """``None`` when ``obj.attr`` is still our wrapper; else a function that puts the original in our
        wrapper's place inside the hook chain installed on top of it; :class:`ScheduleError` if there is none."""
        if obj.__dict__.get(attr) is wrapper:
            return None
        if attr == "forward":
            # diffusers HookRegistry: each registered hook keeps the forward it wraps in a function reference
            registry = getattr(obj, "_diffusers_hook", None)
            for ref in getattr(registry, "_fn_refs", ()):
                for field in ("forward", "original_forward"):
                    if getattr(ref, field, None) is wrapper:
                        return lambda original, ref=ref, field=field: setattr(ref, field, original)
            # accelerate add_hook_to_module: the wrapped forward is module._old_forward
            if obj.__dict__.get("_old_forward") is wrapper:
                return lambda original: setattr(obj, "_old_forward", original)
        current = obj.__dict__.get(attr)
        by = getattr(current, "__qualname__", type(current).__name__)
        raise ScheduleError(
            f"remove(): {self._describe(obj)}.{attr} was replaced after the schedule was applied by something "
            f"cachesearch cannot unwrap ({by}); "
            f"undo that replacement, then call remove() again (or install such hooks before applying the schedule)"
        )
