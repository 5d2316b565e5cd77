"""Errors raised by the schedule layer."""

from __future__ import annotations

__all__ = ["ScheduleError"]


class ScheduleError(ValueError):
    """A schedule, policy or schedule file is invalid, or cannot be applied.

    The message names the offending field (e.g. ``blocks["up_blocks.1"]``) and says what was expected.
    """
