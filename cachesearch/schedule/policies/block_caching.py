"""``BlockCachingAuto`` (arXiv 2312.03209) and the block-change ``BlockProfile`` it thresholds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._blockspace import BlockSpace
from .._errors import ScheduleError
from .._mask import RECOMPUTE, REUSE
from .base import MaskPolicy, Masks, check_float, register_policy

__all__ = ["BlockCachingAuto", "BlockProfile"]


@dataclass(frozen=True, kw_only=True)
class BlockProfile:
    """Relative L1 change of each block's output between consecutive steps (Block Caching's analysis).

    ``changes[i][s]`` is the mean ``||o_s - o_{s-1}||_1 / ||o_{s-1}||_1`` of block ``blocks[i]`` at step
    ``s`` (``changes[i][0]`` is 0 by convention).
    """

    blocks: tuple[str, ...]
    changes: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        if len(self.blocks) != len(self.changes) or not self.blocks:
            raise ScheduleError("profile: expected one row of changes per block")
        n = len(self.changes[0])
        for b, row in zip(self.blocks, self.changes):
            if len(row) != n:
                raise ScheduleError(f"profile[{b!r}]: expected {n} steps, got {len(row)}")
            if any((not math.isfinite(v)) or v < 0 for v in row):
                raise ScheduleError(f"profile[{b!r}]: changes must be finite and >= 0")

    @property
    def num_steps(self) -> int:
        """Number of steps profiled."""
        return len(self.changes[0])


@register_policy
@dataclass(frozen=True, kw_only=True)
class BlockCachingAuto(MaskPolicy):
    """Block Caching's automatic schedule (arXiv 2312.03209): a block recomputes when its accumulated
    relative change since its last recompute exceeds ``threshold``.

    ``profile`` comes from :func:`cachesearch.evaluate.profile_blocks` for the same model, sampler and steps.
    """

    kind: ClassVar[str] = "blockcaching"
    threshold: float
    profile: BlockProfile | None = field(default=None, compare=False)
    profile_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "threshold", check_float("policy.threshold", self.threshold, lo=0.0))

    def masks(self, space: BlockSpace, num_steps: int, *, call_starts: Sequence[int] | None = None) -> Masks:
        if self.profile is None:
            raise ScheduleError(
                "BlockCachingAuto needs a block-change profile; build one with cachesearch.evaluate."
                "profile_blocks (or `cachesearch profile`) and pass profile=..."
            )
        if self.profile.num_steps != num_steps:
            raise ScheduleError(
                f"policy.profile: profiled {self.profile.num_steps} steps but the schedule has {num_steps}"
            )
        space.check_disjoint(list(self.profile.blocks))
        out = {}
        for name, row in zip(self.profile.blocks, self.profile.changes):
            acc, chars = 0.0, [RECOMPUTE]
            for s in range(1, num_steps):
                acc += row[s]
                if acc > self.threshold:
                    chars.append(RECOMPUTE)
                    acc = 0.0
                else:
                    chars.append(REUSE)
            m = "".join(chars)
            out[name] = (m, m)
        return {n: out[n] for n in space.order(list(out))}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "threshold": self.threshold, "profile_id": self.profile_id}
