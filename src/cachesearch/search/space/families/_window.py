"""The per-target recompute window both ``periodic`` (blocks) and ``components`` (periodic form) search: a
period, a phase and an active window ``[start, end)``, as four parameters ``<prefix>.period/phase/start/end``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..params import Dist, Fields

__all__ = ["decode_window", "encode_window", "parse_window", "window_dists"]


def parse_window(fields: Fields, path: str, section: Mapping[str, Any]) -> dict[str, Any]:
    """The four ranges of a family section (keyword arguments of the family's dataclass)."""
    return {
        "period": fields.int(f"{path}.period", section["period"], lo=1),
        "phase": fields.int(f"{path}.phase", section["phase"], lo=0),
        "start": fields.float(f"{path}.start", section["start"], lo=0.0, hi=1.0),
        "end": fields.float(f"{path}.end", section["end"], lo=0.0, hi=1.0),
    }


def window_dists(fields: Fields, prefix: str, path: str, family: Any) -> list[Dist]:
    """The four distributions of one target, named ``<prefix>.*``; ``path`` is the family's file section."""
    return [
        Dist.integer(fields, f"{prefix}.period", f"{path}.period", family.period, {}),
        Dist.integer(fields, f"{prefix}.phase", f"{path}.phase", family.phase, {}),
        Dist.real(f"{prefix}.start", family.start),
        Dist.real(f"{prefix}.end", family.end),
    ]


def decode_window(values: Mapping[str, Any], prefix: str) -> tuple[int, int, float, float]:
    """A trial's ``(period, phase, start, end)``: phase modulo the period, the window ordered."""
    period = int(values[f"{prefix}.period"])
    phase = int(values[f"{prefix}.phase"]) % period
    start, end = float(values[f"{prefix}.start"]), float(values[f"{prefix}.end"])
    return (period, phase, start, end) if start <= end else (period, phase, end, start)


def encode_window(prefix: str, period: int, phase: int, start: float, end: float) -> dict[str, Any]:
    """The parameters that :func:`decode_window` turns back into this window."""
    return {f"{prefix}.period": period, f"{prefix}.phase": phase, f"{prefix}.start": start, f"{prefix}.end": end}
