"""Typed field readers shared by the YAML formats: each raises :class:`ScheduleError` naming the field path."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ._errors import ScheduleError, short_repr

__all__ = ["_int", "_mapping", "_num", "_str"]


def _mapping(path: str, value: Any, required: set[str], optional: set[str] = frozenset()) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ScheduleError(f"{path}: expected a mapping with keys {sorted(required | optional)}")
    keys = set(value)
    missing = required - keys
    if missing:
        raise ScheduleError(f"{path}: missing required key(s) {sorted(missing)}")
    unknown = keys - required - optional
    if unknown:
        raise ScheduleError(
            f"{path}: unknown key(s) {short_repr(sorted(map(str, unknown)))}; allowed: {sorted(required | optional)}"
        )
    return dict(value)


def _str(path: str, value: Any, *, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not value:
        raise ScheduleError(f"{path}: expected a non-empty string, got {short_repr(value)}")
    return value


def _num(path: str, value: Any, *, nullable: bool = True, lo: float | None = None) -> float | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScheduleError(f"{path}: expected a number{' or null' if nullable else ''}, got {short_repr(value)}")
    v = float(value)
    if math.isnan(v):
        raise ScheduleError(f"{path}: expected a number, got NaN")
    if lo is not None and v < lo:
        raise ScheduleError(f"{path}: expected a number >= {lo}, got {v}")
    return v


def _int(path: str, value: Any, *, nullable: bool = False, lo: int | None = None) -> int | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScheduleError(f"{path}: expected an integer, got {short_repr(value)}")
    if lo is not None and value < lo:
        raise ScheduleError(f"{path}: expected an integer >= {lo}, got {value}")
    return value
