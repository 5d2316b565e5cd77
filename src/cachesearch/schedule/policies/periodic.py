"""``PeriodicMask``: per block a period, a phase and an active window (compact and searchable)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .._blockspace import BlockSpace
from .._errors import ScheduleError
from .._mask import RECOMPUTE, REUSE, check_block_name
from .base import MaskPolicy, Masks, Policy, check_float, check_int, register_policy

__all__ = ["PeriodicMask"]


@register_policy
@dataclass(frozen=True, kw_only=True)
class PeriodicMask(MaskPolicy):
    """Compact searchable masks: per block a period, a phase and an active window.

    Block ``b`` recomputes at step ``s`` when ``s`` is outside its window ``[start, end)`` (fractions of the
    steps) or ``(s - phase) % period == 0``. Blocks not listed recompute every step.
    ``blocks`` is a tuple of ``(block, period, phase, start, end)``.
    """

    kind: ClassVar[str] = "periodic"
    blocks: tuple[tuple[str, int, int, float, float], ...]

    def __post_init__(self) -> None:
        items = []
        for i, entry in enumerate(self.blocks):
            if len(entry) != 5:
                raise ScheduleError(f"policy.blocks[{i}]: expected [block, period, phase, start, end]")
            name, period, phase, start, end = entry
            check_block_name(f"policy.blocks[{i}][0]", name)
            period = check_int(f"policy.blocks[{i}].period", period, lo=1)
            phase = check_int(f"policy.blocks[{i}].phase", phase, lo=0)
            start = check_float(f"policy.blocks[{i}].start", start, lo=0.0)
            end = check_float(f"policy.blocks[{i}].end", end, lo=0.0)
            if not start <= end <= 1.0:
                raise ScheduleError(f"policy.blocks[{i}]: expected 0 <= start <= end <= 1, got {start}, {end}")
            items.append((name, period, phase, start, end))
        object.__setattr__(self, "blocks", tuple(items))

    def masks(self, space: BlockSpace, num_steps: int, *, call_starts: Sequence[int] | None = None) -> Masks:
        names = [b[0] for b in self.blocks]
        space.check_names(names, "policy.blocks")
        space.check_disjoint(names)
        out = self._masks(num_steps)
        return {n: out[n] for n in space.order(names)}

    def _masks(self, num_steps: int) -> Masks:
        out = {}
        for name, period, phase, start, end in self.blocks:
            lo, hi = round(start * num_steps), round(end * num_steps)
            m = "".join(
                RECOMPUTE if (s == 0 or not lo <= s < hi or (s - phase) % period == 0) else REUSE
                for s in range(num_steps)
            )
            out[name] = (m, m)
        return out

    def retime(self, masks, num_steps, *, call_starts=None):  # noqa: D102 - see Policy.retime
        new = self._masks(num_steps)
        return self, {n: new[n] for n in masks}  # the schedule's block order

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "blocks": [list(b) for b in self.blocks]}

    @classmethod
    def from_dict(cls, args: Mapping[str, Any], path: str) -> Policy:
        args = dict(args)
        if "blocks" in args:
            args["blocks"] = tuple(tuple(b) if isinstance(b, list) else b for b in args["blocks"])
        return super().from_dict(args, path)
