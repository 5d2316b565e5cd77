"""Family ``middleauto``: the stack cache with profile-chosen recompute steps
(:class:`~cachesearch.schedule.MiddleCacheAuto`, a static FirstBlockCache / DBCache / MagCache) — the first
``front`` and last ``back`` transformer blocks run every step; the middle recomputes where the run's
block-change profile has added up more than ``threshold`` since its last recompute (or after ``max_skip``
reused steps), reused as residuals (``order`` 0) or forecast by a Taylor series (``order`` 1, 2) otherwise.
Always on the reference steps, which the profile covers.

``forecast_gap`` (optional; a dimension of its own): a Taylor forecast covers at most this many reused steps in
a row, whatever ``max_skip`` says (the truncation error of an order-k forecast grows like gap^(k+1); on 64 unseen
pairs of ``embedded:shapes-flux`` a second-order forecast over 3-step gaps broke 12 images where residual reuse of
the same mask broke 8, and over 1-step gaps it was the best of the three; ``benchmarks/tail_causes.py``). Spaces
that do not give it keep the old behaviour (no limit).

``guard`` (optional, ``{low: 0, high: 1}``): 1 makes a forecast fall back to a lower order where its next term
outgrows the one before it (:attr:`cachesearch.Schedule.taylor_guard`); meaningless with order 0.

Baselines: a grid of thresholds with one front block and no back block (FirstBlockCache's layout), then with none
(MagCache's: the whole stack reused)."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ....schedule import BlockSpace, MiddleCacheAuto, Policy
from ....schedule._mask import REUSE
from ..context import SpaceContext, is_transformer
from ..params import Dist, Fields, FloatParam, IntParam
from ._dit import require_transformer
from .base import BaselineGrid, MaskFamily
from .middle import fit_front_back

if TYPE_CHECKING:
    from ....evaluate._baselines import Baseline

__all__ = ["MiddleAutoFamily"]

DEFAULT_THRESHOLDS = (0.08, 0.1, 0.14, 0.2, 0.3)
"""Baseline thresholds: on the embedded FLUX model's profile (mean change 0.05-0.3 per step) they span
about 0.8 to 0.4 of full cost."""


@dataclass(frozen=True)
class MiddleAutoFamily(MaskFamily):
    """Ranges of the profile-driven stack cache's threshold, always-run blocks, warm-up and skip limit."""

    threshold: FloatParam
    front: IntParam
    back: IntParam
    warmup: IntParam
    max_skip: IntParam
    order: IntParam
    forecast_gap: IntParam | None = None
    guard: IntParam | None = None

    name: ClassVar[str] = "middleauto"
    defaults: ClassVar[Mapping[str, Any]] = {
        "threshold": {"low": 0.02, "high": 1.0, "log": True},
        "front": {"low": 0, "high": 2},
        "back": {"low": 0, "high": 2},
        "warmup": {"low": 0, "high": 3},
        "max_skip": {"low": 0, "high": 4},
        "order": {"low": 0, "high": 2},
        "forecast_gap": None,
        "guard": None,
    }
    grid: ClassVar[BaselineGrid | None] = BaselineGrid("thresholds", integer=False, lo=0.0)
    reference_steps: ClassVar[bool] = True

    @classmethod
    def parse(cls, fields: Fields, path: str, section: Mapping[str, Any]) -> MiddleAutoFamily:
        order = fields.int(f"{path}.order", section["order"], lo=0)
        if int(order.high) > 2:
            raise fields.error(f"{path}.order",
                               f"expected 0 (residual reuse), 1 or 2 (Taylor order): got up to {order.high}")
        return cls(
            threshold=fields.float(f"{path}.threshold", section["threshold"], lo=0.0, strict_lo=True),
            front=fields.int(f"{path}.front", section["front"], lo=0),
            back=fields.int(f"{path}.back", section["back"], lo=0),
            warmup=fields.int(f"{path}.warmup", section["warmup"], lo=0),
            max_skip=fields.int(f"{path}.max_skip", section["max_skip"], lo=0),
            order=order,
            forecast_gap=None if section["forecast_gap"] is None else fields.int(
                f"{path}.forecast_gap", section["forecast_gap"], lo=1),
            guard=None if section["guard"] is None else cls._parse_guard(fields, f"{path}.guard", section["guard"]),
        )

    @staticmethod
    def _parse_guard(fields: Fields, path: str, value: Any) -> IntParam:
        guard = fields.int(path, value, lo=0)
        if int(guard.high) > 1:
            raise fields.error(path, f"expected 0 (no guard) or 1 (guarded forecasts): got up to {guard.high}")
        return guard

    @classmethod
    def supports(cls, blocks: BlockSpace) -> bool:
        return is_transformer(blocks)

    def dists(self, ctx: SpaceContext, fields: Fields) -> list[Dist]:
        require_transformer(self.name, ctx, fields)
        if ctx.profile is None:
            raise fields.error("mask.families", "family 'middleauto' needs the run's block-change profile, which "
                                                "was not computed")
        hi, why = len(ctx.stages) - 1, f"{ctx.denoiser()}'s stack has {len(ctx.stages)} blocks and one must be cached"
        return [
            Dist.real("middleauto.threshold", self.threshold),
            Dist.integer(fields, "middleauto.front", "mask.middleauto.front", self.front, {}, hi=hi, hi_why=why),
            Dist.integer(fields, "middleauto.back", "mask.middleauto.back", self.back, {}, hi=hi, hi_why=why),
            Dist.integer(fields, "middleauto.warmup", "mask.middleauto.warmup", self.warmup, {}),
            Dist.integer(fields, "middleauto.max_skip", "mask.middleauto.max_skip", self.max_skip, {}),
            Dist.integer(fields, "middleauto.order", "mask.middleauto.order", self.order, {}),
        ] + ([] if self.forecast_gap is None else [
            Dist.integer(fields, "middleauto.forecast_gap", "mask.middleauto.forecast_gap", self.forecast_gap, {})]
        ) + ([] if self.guard is None else [
            Dist.integer(fields, "middleauto.guard", "mask.middleauto.guard", self.guard, {})])

    def _skip(self, max_skip: int, order: int, gap: int | None) -> int:
        """The skip limit a policy gets: ``max_skip``, bounded by the forecast gap when it forecasts."""
        if order == 0 or gap is None:
            return max_skip
        return gap if max_skip == 0 else min(max_skip, gap)

    def policy(self, values: Mapping[str, Any], ctx: SpaceContext, num_steps: int) -> MiddleCacheAuto:
        front, back = fit_front_back(int(values["middleauto.front"]), int(values["middleauto.back"]),
                                     len(ctx.stages))
        order = int(values["middleauto.order"])
        gap = None if self.forecast_gap is None else int(values["middleauto.forecast_gap"])
        guard = self.guard is not None and bool(int(values["middleauto.guard"])) and order > 0
        return MiddleCacheAuto(threshold=float(values["middleauto.threshold"]), front=front, back=back,
                               warmup=int(values["middleauto.warmup"]),
                               max_skip=self._skip(int(values["middleauto.max_skip"]), order, gap),
                               order=order, guard=guard, profile=ctx.profile, profile_id=ctx.profile_id)

    def params(self, policy: Policy | None, ctx: SpaceContext) -> dict[str, Any] | None:
        if not isinstance(policy, MiddleCacheAuto) or policy.front + policy.back >= len(ctx.stages):
            return None
        values = {"middleauto.threshold": policy.threshold, "middleauto.front": policy.front,
                  "middleauto.back": policy.back, "middleauto.warmup": policy.warmup,
                  "middleauto.max_skip": policy.max_skip, "middleauto.order": policy.order}
        gap = self.forecast_gap
        if gap is not None:
            if policy.order and (policy.max_skip == 0 or policy.max_skip > int(gap.high)):
                return None  # a forecast over longer gaps than the space allows
            values["middleauto.forecast_gap"] = min(max(policy.max_skip, int(gap.low)), int(gap.high))
        if self.guard is not None:
            if int(policy.guard) not in range(int(self.guard.low), int(self.guard.high) + 1):
                return None
            values["middleauto.guard"] = int(policy.guard)
        elif policy.guard:
            return None  # the space has no guarded forecasts
        return values

    def same(self, a: Policy, b: Policy) -> bool:
        """Equal parameters: the profile is the run's own; its id may be spelled differently."""
        if isinstance(a, MiddleCacheAuto) and isinstance(b, MiddleCacheAuto):
            return (a.threshold, a.front, a.back, a.warmup, a.max_skip, a.order, a.guard) == (
                b.threshold, b.front, b.back, b.warmup, b.max_skip, b.order, b.guard)
        return a == b

    def baselines(self, ctx: SpaceContext, grid: Sequence[Any] | None) -> list[Baseline]:
        """``middleauto-tT-f1-b0`` (residual reuse) and ``middleauto-tT-f1-b0-o1`` (a first-order forecast, as
        cache-dit's DBCache + TaylorSeer) for each threshold ``T`` of the grid (default
        :data:`DEFAULT_THRESHOLDS`) in FirstBlockCache's layout (one front block), then the same in MagCache's
        (the whole stack reused: ``f0``); front, back, warm-up, skip limit and order moved into their ranges, and
        thresholds whose mask computes everything or repeats a smaller one's in the same layout left out."""
        from ....evaluate._baselines import Baseline

        if not ctx.transformer or len(ctx.stages) < 2 or ctx.profile is None:
            return []

        def clamp(p: IntParam, v: int) -> int:
            return min(max(v, int(p.low)), int(p.high))

        layouts = dict.fromkeys(fit_front_back(clamp(self.front, f), clamp(self.back, 0), len(ctx.stages))
                                for f in (1, 0))  # FirstBlockCache's, then MagCache's
        out, seen = [], set()
        lo, hi = float(self.threshold.low), float(self.threshold.high)
        orders = sorted({int(self.order.low), clamp(self.order, 1)})  # residual reuse, and cache-dit's + TaylorSeer
        thresholds = sorted({min(max(float(t), lo), hi) for t in (grid if grid is not None else DEFAULT_THRESHOLDS)})
        for (front, back), t in itertools.product(layouts, thresholds):
            p = MiddleCacheAuto(threshold=t, front=front, back=back, warmup=int(self.warmup.low),
                                max_skip=int(self.max_skip.low), profile=ctx.profile, profile_id=ctx.profile_id)
            if ctx.block_space is not None:  # drop thresholds that compute everything or repeat a smaller one
                m = p.mask(ctx.block_space, ctx.num_steps)
                if REUSE not in m or (front, back, m) in seen:
                    continue
                seen.add((front, back, m))
            for order in orders:
                gap = None if self.forecast_gap is None else int(self.forecast_gap.low)
                guard = bool(order) and self.guard is not None and bool(int(self.guard.low))
                q = dataclasses.replace(p, order=order, max_skip=self._skip(p.max_skip, order, gap), guard=guard)
                out.append(Baseline(kind=self.name, name=q.default_name(ctx.num_steps), policy=q))
        return out
