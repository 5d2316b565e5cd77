"""``BlockCachingAuto`` (arXiv 2312.03209) and the block-change ``BlockProfile`` it thresholds."""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._blockspace import BlockKind, BlockSpace
from .._errors import ScheduleError
from .._mask import RECOMPUTE, REUSE
from .base import MaskPolicy, Masks, check_float, register_policy

__all__ = ["BlockCachingAuto", "BlockProfile", "CachedBlocks"]


class CachedBlocks(str, enum.Enum):
    """Which profiled blocks :class:`BlockCachingAuto` may cache (the rest recompute every step)."""

    PROFILE = "profile"  # every block of the profile (stages or layers, as profiled)
    ATTENTIONS = "attentions"  # only attention (SpatialTransformer) layers: the paper's choice
    COMPONENTS = "components"  # only components (attn1 / attn2 / ff in a UNet; a DiT block's attn, ff, ...)


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
    blocks: CachedBlocks = CachedBlocks.PROFILE
    """``"attentions"``: cache only the attention layers of a layer-level profile (ResBlocks recompute);
    ``"components"``: only the components (attn1/attn2/ff of a UNet, a DiT block's attn/ff/...) of a
    component-level profile (a profile of some components only caches just those)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "threshold", check_float("policy.threshold", self.threshold, lo=0.0))
        try:
            object.__setattr__(self, "blocks", CachedBlocks(self.blocks))
        except ValueError:
            raise ScheduleError(
                f"policy.blocks: expected one of {[b.value for b in CachedBlocks]}, got {self.blocks!r}"
            ) from None

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
        rows = list(zip(self.profile.blocks, self.profile.changes))
        if self.blocks is not CachedBlocks.PROFILE:
            if self.blocks is CachedBlocks.ATTENTIONS:
                wanted = set(space.with_role("attention"))
            else:
                wanted = set(space.names(BlockKind.COMPONENT))
            rows = [(n, r) for n, r in rows if n in wanted]
            if not rows:
                raise ScheduleError(
                    f"policy.blocks: {self.blocks.value!r} needs a profile of those blocks; profile with "
                    f"granularity={'layer' if self.blocks is CachedBlocks.ATTENTIONS else 'component'!r}"
                )
        space.check_disjoint([n for n, _ in rows])
        out = {}
        for name, row in rows:
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
        out = {"kind": self.kind, "threshold": self.threshold, "profile_id": self.profile_id}
        if self.blocks is not CachedBlocks.PROFILE:  # files of the default stay as they were
            out["blocks"] = self.blocks.value
        return out
