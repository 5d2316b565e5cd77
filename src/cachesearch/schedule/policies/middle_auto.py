"""``MiddleCacheAuto``: the stack cache with its recompute steps chosen from the block-change profile."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._blockspace import BlockSpace
from .._errors import ScheduleError
from .._mask import RECOMPUTE, REUSE
from .base import MaskPolicy, Masks, check_float, check_int, register_policy
from .block_caching import BlockProfile
from .middle import MiddleCache

__all__ = ["MiddleCacheAuto"]


@register_policy
@dataclass(frozen=True, kw_only=True)
class MiddleCacheAuto(MaskPolicy):
    """The stack cache of :class:`MiddleCache` (first ``front`` and last ``back`` blocks every step, the
    middle reused as residuals) whose middle recomputes where the profiled change has built up, not every N
    steps: a static, profile-calibrated form of the dynamic caches FirstBlockCache, DBCache and MagCache.

    At each step after the ``warmup`` steps the mean relative L1 change of the middle blocks' outputs (from
    the run's block-change profile, :func:`cachesearch.evaluate.profile_blocks` at ``granularity="stage"``)
    is added up since the last recompute; the middle recomputes once the sum exceeds ``threshold`` or after
    ``max_skip`` reused steps in a row (MagCache's ``max_skip_steps``; 0: no limit). One mask for all middle
    blocks, so the reused middle adds the residual it last computed as a whole, as the dynamic caches do;
    unlike them the choice is made once, from the profile, and costs no host sync at run time. With
    ``order`` 1 or 2 a reused middle block is forecast instead (``reuse: taylor``, TaylorSeer's finite
    differences over its last recomputes).

    Args:
        threshold: accumulated mean change that triggers a recompute of the middle (> 0).
        front: blocks at the start of the stack that always run (DBCache's ``Fn``).
        back: blocks at the end of the stack that always run (DBCache's ``Bn``).
        warmup: the first steps, where every block runs (at least the first).
        max_skip: at most this many reused steps in a row (0: no limit).
        order: 0 reuses the middle's residual (``reuse: residual``); 1 or 2 forecasts its blocks' outputs with
            a Taylor series of that order (``reuse: taylor``).
        guard: with ``order`` 1 or 2, a forecast whose next term outgrows the one before it falls back to the
            lower order on the device (:attr:`cachesearch.Schedule.taylor_guard`).
        profile: the block-change profile of the same model, sampler and steps.
        profile_id: the profile's id (recorded in the file; the profile itself is not).
    """

    kind: ClassVar[str] = "middleauto"
    since_format: ClassVar[int] = 3
    threshold: float
    front: int = 1
    back: int = 0
    warmup: int = 0
    max_skip: int = 0
    order: int = 0
    guard: bool = False
    profile: BlockProfile | None = field(default=None, compare=False)
    profile_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "threshold",
                           check_float("policy.threshold", self.threshold, lo=0.0, strict_lo=True))
        for name in ("front", "back", "warmup", "max_skip"):
            object.__setattr__(self, name, check_int(f"policy.{name}", getattr(self, name), lo=0))
        object.__setattr__(self, "order", check_int("policy.order", self.order, lo=0, hi=2))
        if not isinstance(self.guard, bool):
            raise ScheduleError(f"policy.guard: expected true or false, got {self.guard!r}")
        if self.guard and not self.order:
            raise ScheduleError("policy.guard: guards a Taylor forecast; it needs order 1 or 2 (order 0 reuses the "
                                "middle's residual)")

    def mask(self, space: BlockSpace, num_steps: int) -> str:
        """The one mask of every middle block over ``num_steps`` steps."""
        if self.profile is None:
            raise ScheduleError(
                "policy.profile: MiddleCacheAuto needs a block-change profile; build one with cachesearch.evaluate."
                "profile_blocks(..., granularity='stage') (or `cachesearch profile`) and pass profile=..."
            )
        if self.profile.num_steps != num_steps:
            raise ScheduleError(
                f"policy.profile: profiled {self.profile.num_steps} steps but the schedule has {num_steps}"
            )
        middle = self._stack().middle(space)
        rows = dict(zip(self.profile.blocks, self.profile.changes, strict=True))
        missing = [b for b in middle if b not in rows]
        if missing:
            raise ScheduleError(
                f"policy.profile: no profiled change for middle block(s) {missing}; profile the stack's blocks "
                "(granularity='stage')"
            )
        chars, acc, run = [], 0.0, 0
        for s in range(num_steps):
            if s < max(self.warmup, 1):
                chars.append(RECOMPUTE)
                continue
            acc += sum(rows[b][s] for b in middle) / len(middle)
            if acc > self.threshold or (self.max_skip and run >= self.max_skip):
                chars.append(RECOMPUTE)
                acc, run = 0.0, 0
            else:
                chars.append(REUSE)
                run += 1
        return "".join(chars)

    def _stack(self) -> MiddleCache:
        return MiddleCache(interval=1, front=self.front, back=self.back)

    def masks(self, space: BlockSpace, num_steps: int, *, call_starts: Sequence[int] | None = None) -> Masks:
        m = self.mask(space, num_steps)
        return {name: (m, m) for name in self._stack().middle(space)}

    def reuse(self) -> tuple[str, int | None]:
        return ("taylor", self.order) if self.order else ("residual", None)

    def taylor_guard(self) -> bool:
        return self.guard

    def default_name(self, num_steps: int) -> str:
        warm = f"-w{self.warmup}" if self.warmup else ""
        skip = f"-s{self.max_skip}" if self.max_skip else ""
        order = f"-o{self.order}" if self.order else ""
        guard = "-g" if self.guard else ""
        return f"middleauto-t{self.threshold:.3g}-f{self.front}-b{self.back}{warm}{skip}{order}{guard}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "threshold": self.threshold, "front": self.front, "back": self.back,
                "warmup": self.warmup, "max_skip": self.max_skip, "order": self.order,
                **({"guard": True} if self.guard else {}), "profile_id": self.profile_id}
