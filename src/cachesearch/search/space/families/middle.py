"""Family ``middle``: the stack cache (:class:`~cachesearch.schedule.MiddleCache`, the static form of cache-dit's
DBCache ``Fn``/``Bn``) — the first ``front`` and last ``back`` transformer blocks run every step, the blocks
between them every ``interval`` steps after ``warmup`` full steps, reused as residuals. Baselines: a grid of
intervals with one front block and no back block (DBCache's ``F1B0``), moved into the ranges."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ....schedule import BlockSpace, MiddleCache, Policy
from ..context import SpaceContext, is_transformer
from ..params import Dist, Fields, IntParam
from ._dit import require_transformer
from .base import BaselineGrid, MaskFamily

if TYPE_CHECKING:
    from ....evaluate._baselines import Baseline

__all__ = ["MiddleFamily", "fit_front_back"]


def fit_front_back(front: int, back: int, n_blocks: int) -> tuple[int, int]:
    """``(front, back)`` leaving at least one middle block in a stack of ``n_blocks``: ``back`` shrinks first,
    then ``front`` (a pure function, so a trial whose ranges overlap still replays to one policy)."""
    front = min(front, max(n_blocks - 1, 0))
    back = min(back, max(n_blocks - 1 - front, 0))
    return front, back


@dataclass(frozen=True)
class MiddleFamily(MaskFamily):
    """Ranges of the stack cache's interval, always-run front and back blocks, and warm-up."""

    interval: IntParam
    front: IntParam
    back: IntParam
    warmup: IntParam

    name: ClassVar[str] = "middle"
    defaults: ClassVar[Mapping[str, Any]] = {
        "interval": {"low": 2, "high": 6},
        "front": {"low": 0, "high": 2},
        "back": {"low": 0, "high": 2},
        "warmup": 0,
    }
    grid: ClassVar[BaselineGrid | None] = BaselineGrid("intervals", integer=True, lo=2)

    @classmethod
    def parse(cls, fields: Fields, path: str, section: Mapping[str, Any]) -> MiddleFamily:
        return cls(
            interval=fields.int(f"{path}.interval", section["interval"], lo=1),
            front=fields.int(f"{path}.front", section["front"], lo=0),
            back=fields.int(f"{path}.back", section["back"], lo=0),
            warmup=fields.int(f"{path}.warmup", section["warmup"], lo=0),
        )

    @classmethod
    def supports(cls, blocks: BlockSpace) -> bool:
        return is_transformer(blocks)

    def dists(self, ctx: SpaceContext, fields: Fields) -> list[Dist]:
        require_transformer(self.name, ctx, fields)
        hi, why = len(ctx.stages) - 1, f"{ctx.denoiser()}'s stack has {len(ctx.stages)} blocks and one must be cached"
        return [
            Dist.integer(fields, "middle.interval", "mask.middle.interval", self.interval, {}),
            Dist.integer(fields, "middle.front", "mask.middle.front", self.front, {}, hi=hi, hi_why=why),
            Dist.integer(fields, "middle.back", "mask.middle.back", self.back, {}, hi=hi, hi_why=why),
            Dist.integer(fields, "middle.warmup", "mask.middle.warmup", self.warmup, {}),
        ]

    def policy(self, values: Mapping[str, Any], ctx: SpaceContext, num_steps: int) -> MiddleCache:
        front, back = fit_front_back(int(values["middle.front"]), int(values["middle.back"]), len(ctx.stages))
        return MiddleCache(interval=int(values["middle.interval"]), front=front, back=back,
                           warmup=int(values["middle.warmup"]))

    def params(self, policy: Policy | None, ctx: SpaceContext) -> dict[str, Any] | None:
        if not isinstance(policy, MiddleCache) or policy.front + policy.back >= len(ctx.stages):
            return None
        return {"middle.interval": policy.interval, "middle.front": policy.front, "middle.back": policy.back,
                "middle.warmup": policy.warmup}

    def baselines(self, ctx: SpaceContext, grid: Sequence[Any] | None) -> list[Baseline]:
        """``middle-nN-f1-b0`` for each interval ``N`` of the grid (default 2, 3, 4); front, back and warm-up
        moved into their ranges."""
        from ....evaluate._baselines import Baseline

        if not ctx.transformer or len(ctx.stages) < 2:
            return []

        def clamp(p: IntParam, v: int) -> int:
            return min(max(v, int(p.low)), int(p.high))

        front, back = fit_front_back(clamp(self.front, 1), clamp(self.back, 0), len(ctx.stages))
        out = []
        for n in sorted(set(grid if grid is not None else (2, 3, 4))):
            p = MiddleCache(interval=n, front=front, back=back, warmup=int(self.warmup.low))
            out.append(Baseline(kind=self.name, name=p.default_name(ctx.num_steps), policy=p))
        return out
