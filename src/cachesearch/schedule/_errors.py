"""Errors raised by the schedule layer."""

from __future__ import annotations

__all__ = ["ScheduleError", "short_repr"]


class ScheduleError(ValueError):
    """A schedule, policy or schedule file is invalid, or cannot be applied.

    The message names the offending field (e.g. ``blocks["up_blocks.1"]``) and says what was expected.
    """


def short_repr(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages about untrusted input."""
    text = repr(value) if not isinstance(value, str) or len(value) <= 4 * limit else repr(value[: 4 * limit])
    if len(text) <= limit:
        return text
    size = f"{len(value)} characters" if isinstance(value, (str, bytes)) else type(value).__name__
    return f"{text[: limit - 1]}… ({size})"
