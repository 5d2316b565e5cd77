"""Family ``dbcache``: cache-dit's Dual Block Cache — the first ``fn`` blocks always compute; when their residual
changed by less than ``threshold`` the middle of the stack is skipped (its residual reused) and the last ``bn``
blocks compute on top; never in the first ``warmup`` steps, at most ``max_cached`` cached steps in all and
``max_continuous`` in a row (-1: no limit); optionally with cache-dit's TaylorSeer calibrator of order
``taylorseer_order`` forecasting the reused residual (0: none). Needs ``cachesearch[cache-dit]``. Baselines:
F1B0 and F2B1 at a grid of thresholds, cache-dit's warm-up of 8 steps (scaled down below 28 steps)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ....schedule import CacheDiT, LibraryConfig, Policy
from ..context import SpaceContext
from ..params import Dist, Fields, FloatParam, IntParam
from ._runtime import RuntimeFamily, clamp_high, config_of
from .base import BaselineGrid

if TYPE_CHECKING:
    from ....evaluate._baselines import Baseline

__all__ = ["DBCacheFamily", "dbcache_warmup"]

THRESHOLDS = (0.08, 0.16, 0.32)
"""Default baseline thresholds (cache-dit's default is 0.08)."""
_NAMES = {"dbcache.fn": "Fn_compute_blocks", "dbcache.bn": "Bn_compute_blocks",
          "dbcache.threshold": "residual_diff_threshold", "dbcache.warmup": "max_warmup_steps",
          "dbcache.max_cached": "max_cached_steps", "dbcache.max_continuous": "max_continuous_cached_steps"}


def dbcache_warmup(num_steps: int) -> int:
    """cache-dit's default warm-up (8 steps) at 28 steps or more, ``steps // 4`` (at least 1) below."""
    return 8 if num_steps >= 28 else max(1, num_steps // 4)


@dataclass(frozen=True)
class DBCacheFamily(RuntimeFamily):
    """Ranges of DBCache's Fn, Bn, threshold, warm-up, cached-step limits and TaylorSeer calibrator order."""

    fn: IntParam
    bn: IntParam
    threshold: FloatParam
    warmup: IntParam
    max_cached: IntParam
    max_continuous: IntParam
    taylorseer_order: IntParam

    name: ClassVar[str] = "dbcache"
    library: ClassVar[str] = "cache-dit"
    method: ClassVar[str] = "DBCacheConfig"
    defaults: ClassVar[Mapping[str, Any]] = {
        "fn": {"low": 1, "high": 2},
        "bn": {"low": 0, "high": 2},
        "threshold": {"low": 0.02, "high": 1.0, "log": True},
        "warmup": {"low": 0, "high": 8},
        "max_cached": -1,
        "max_continuous": {"low": -1, "high": 4},
        "taylorseer_order": {"low": 0, "high": 2},
    }
    grid: ClassVar[BaselineGrid | None] = BaselineGrid("thresholds", integer=False, lo=0.0)

    @classmethod
    def parse(cls, fields: Fields, path: str, section: Mapping[str, Any]) -> DBCacheFamily:
        order = fields.int(f"{path}.taylorseer_order", section["taylorseer_order"], lo=0)
        if int(order.high) > 2:
            raise fields.error(f"{path}.taylorseer_order", f"0 (no calibrator), 1 or 2, got up to {order.high}")
        return cls(
            fn=fields.int(f"{path}.fn", section["fn"], lo=1),
            bn=fields.int(f"{path}.bn", section["bn"], lo=0),
            threshold=fields.float(f"{path}.threshold", section["threshold"], lo=0.0),
            warmup=fields.int(f"{path}.warmup", section["warmup"], lo=0, symbols=("steps",)),
            max_cached=fields.int(f"{path}.max_cached", section["max_cached"], lo=-1, symbols=("steps",)),
            max_continuous=fields.int(f"{path}.max_continuous", section["max_continuous"], lo=-1,
                                      symbols=("steps",)),
            taylorseer_order=order,
        )

    def _blocks(self, ctx: SpaceContext) -> int:
        return max(len(ctx.stages), 2)

    def dists(self, ctx: SpaceContext, fields: Fields) -> list[Dist]:
        self.require(ctx, fields)
        n, steps = self._blocks(ctx), {"steps": ctx.num_steps}
        # Fn + Bn < blocks: at least one middle block to cache (cache-dit asserts Fn, Bn <= blocks)
        fn = clamp_high(self.fn, n - 1)
        bn = clamp_high(self.bn, n - 1 - int(fn.low))
        return [
            Dist.integer(fields, "dbcache.fn", "mask.dbcache.fn", fn, {}),
            Dist.integer(fields, "dbcache.bn", "mask.dbcache.bn", bn, {}),
            Dist.real("dbcache.threshold", self.threshold),
            Dist.integer(fields, "dbcache.warmup", "mask.dbcache.warmup", self.warmup, steps),
            Dist.integer(fields, "dbcache.max_cached", "mask.dbcache.max_cached", self.max_cached, steps),
            Dist.integer(fields, "dbcache.max_continuous", "mask.dbcache.max_continuous", self.max_continuous, steps),
            Dist.integer(fields, "dbcache.taylorseer_order", "mask.dbcache.taylorseer_order", self.taylorseer_order,
                         {}),
        ]

    def policy(self, values: Mapping[str, Any], ctx: SpaceContext, num_steps: int) -> CacheDiT:
        fields = {field: values[p] for p, field in _NAMES.items()}
        fields["residual_diff_threshold"] = float(fields["residual_diff_threshold"])
        order = int(values["dbcache.taylorseer_order"])
        calibrator = None if order == 0 else LibraryConfig(method="TaylorSeerCalibratorConfig",
                                                           fields={"taylorseer_order": order})
        return CacheDiT(cache_config=LibraryConfig(method=self.method, fields={k: v for k, v in fields.items()}),
                        calibrator_config=calibrator)

    def params(self, policy: Policy | None, ctx: SpaceContext) -> dict[str, Any] | None:
        cfg = config_of(policy, self.method, "cache_config")
        if cfg is None:
            return None
        out = self.values(cfg, _NAMES)
        cal = policy.calibrator_config  # type: ignore[union-attr]
        if cal is None:
            out["dbcache.taylorseer_order"] = 0
        elif cal.method == "TaylorSeerCalibratorConfig":
            out["dbcache.taylorseer_order"] = cal.fields.get("taylorseer_order", 1)
        else:
            return None
        return out

    def baselines(self, ctx: SpaceContext, grid: Sequence[Any] | None) -> list[Baseline]:
        from ....evaluate._baselines import Baseline

        if self.unavailable(ctx) is not None:
            return []
        out = []
        for fn, bn in ((1, 0), (2, 1)):
            if fn + bn >= self._blocks(ctx):
                continue
            for t in sorted(set(grid if grid is not None else THRESHOLDS)):
                values = {"dbcache.fn": fn, "dbcache.bn": bn, "dbcache.threshold": float(t),
                          "dbcache.warmup": dbcache_warmup(ctx.num_steps), "dbcache.max_cached": -1,
                          "dbcache.max_continuous": -1, "dbcache.taylorseer_order": 0}
                p = self.policy(values, ctx, ctx.num_steps)
                out.append(Baseline(kind=self.name, name=p.default_name(ctx.num_steps), policy=p))
        return out
