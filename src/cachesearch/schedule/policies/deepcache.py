"""``DeepCache`` (arXiv 2312.00858): full steps, and in between only a shallow skip branch recomputes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .._blockspace import BlockKind, BlockSpace
from .._errors import ScheduleError
from .._mask import RECOMPUTE, REUSE
from .base import MaskPolicy, Masks, check_float, check_int, register_policy

__all__ = ["DeepCache"]


def _quad_center_steps(num_steps: int, n_full: int, center: int, power: float) -> list[int]:
    """Full-compute steps of DeepCache's non-uniform schedule (``sample_from_quad_center`` in the paper code).

    Steps are denser near ``center``; the exponent is lowered in 0.02 decrements until exactly ``n_full``
    distinct steps come out, as the official implementation does.
    """
    p = power
    while p > 1:
        # The official code raises a negative base to 1/p, i.e. works on the complex principal root and
        # keeps the real part when casting to int; do the same so step sets match the paper's code.
        lo = complex(-center) ** (1 / p)
        hi = complex(num_steps - center) ** (1 / p)
        x = np.linspace(lo, hi, n_full + 1) ** p
        idx = [0] + [int(v) + center for v in np.unique(np.trunc(x.real).astype(np.int32))[1:-1]]
        if len(idx) == n_full:
            return sorted(idx)
        p -= 0.02
    raise ScheduleError(
        f"DeepCache non-uniform: cannot place {n_full} full steps around center={center} in {num_steps} "
        f"steps; lower `center` or the interval"
    )


@register_policy
@dataclass(frozen=True, kw_only=True)
class DeepCache(MaskPolicy):
    """DeepCache (arXiv 2312.00858): a full step, then ``interval - 1`` steps that recompute only the
    shallow skip branch ``branch``.

    Args:
        interval: N in the paper's 1:N; 1 disables caching.
        branch: skip branch, numbered exactly like the official package's ``cache_branch_id``
            (``branch // 3`` = block from the outside, ``branch % 3`` = layer within it for SD-like UNets).
        schedule: ``"uniform"`` (full steps every N) or ``"nonuniform"`` (more full steps near ``center``).
        center: non-uniform only; the step the full steps cluster around (default: 30 % of the steps).
        power: non-uniform only; exponent of the quadratic spacing (paper default 1.4).
    """

    kind: ClassVar[str] = "deepcache"
    interval: int
    branch: int = 0
    schedule: str = "uniform"
    center: int | None = None
    power: float = 1.4

    def __post_init__(self) -> None:
        object.__setattr__(self, "interval", check_int("policy.interval", self.interval, lo=1))
        object.__setattr__(self, "branch", check_int("policy.branch", self.branch, lo=0))
        if self.schedule not in ("uniform", "nonuniform"):
            raise ScheduleError(f"policy.schedule: expected 'uniform' or 'nonuniform', got {self.schedule!r}")
        if self.center is not None:
            object.__setattr__(self, "center", check_int("policy.center", self.center, lo=0))
        object.__setattr__(self, "power", check_float("policy.power", self.power, lo=1.0, strict_lo=True))

    def full_steps(self, num_steps: int, call_starts: Sequence[int] | None = None) -> list[int]:
        """Steps that run the whole network.

        Uniform: every ``interval``-th *denoiser call*, as the official helper counts (``call_starts`` gives
        each step's first call; on one-call-per-step samplers this is every ``interval``-th step).
        """
        if self.interval == 1:
            return list(range(num_steps))
        if self.schedule == "uniform":
            if call_starts is None:
                return list(range(0, num_steps, self.interval))
            if len(call_starts) != num_steps:
                raise ScheduleError(f"call_starts: expected {num_steps} entries, got {len(call_starts)}")
            return [s for s, c in enumerate(call_starts) if (c - call_starts[0]) % self.interval == 0]
        center = round(0.3 * num_steps) if self.center is None else self.center
        if center >= num_steps:
            raise ScheduleError(f"policy.center: must be < the number of steps ({num_steps}), got {center}")
        n_full = math.ceil(num_steps / self.interval)
        return _quad_center_steps(num_steps, n_full, center, self.power)

    def masks(self, space: BlockSpace, num_steps: int, *, call_starts: Sequence[int] | None = None) -> Masks:
        if not space.deepcache_branches:
            raise ScheduleError(f"DeepCache needs skip branches; the {space.family} denoiser has none")
        if self.branch >= len(space.deepcache_branches):
            raise ScheduleError(
                f"policy.branch: {self.branch} is out of range; this denoiser has branches "
                f"0..{len(space.deepcache_branches) - 1}"
            )
        keep = space.deepcache_branches[self.branch]
        full = set(self.full_steps(num_steps, call_starts))
        layer_masks = {}
        for name in space.names(BlockKind.LAYER):
            m = "".join(RECOMPUTE if (s in full or name in keep) else REUSE for s in range(num_steps))
            layer_masks[name] = m
        # Stages without cacheable layers (none in UNets, but keep the IR total) follow the full steps.
        for name in space.names(BlockKind.STAGE):
            if not space.children(name):
                layer_masks[name] = "".join(RECOMPUTE if s in full else REUSE for s in range(num_steps))
        coarse = space.coarsen(layer_masks)
        return {n: (m, m) for n, m in coarse.items()}

    def retime(self, masks, num_steps, *, call_starts=None):  # noqa: D102 - see Policy.retime
        # The skip branch's layers are exactly the blocks that recompute at every step; all others follow the
        # full steps. (With interval 1 every block is all-R, which is also right at any step count.)
        full = set(self.full_steps(num_steps, call_starts))
        out = {}
        for name, (cond, _uncond) in masks.items():
            m = RECOMPUTE * num_steps if REUSE not in cond else "".join(
                RECOMPUTE if s in full else REUSE for s in range(num_steps))
            out[name] = (m, m)
        return self, out

    def default_name(self, num_steps: int) -> str:
        tag = "" if self.schedule == "uniform" else "-nonuniform"
        return f"deepcache-n{self.interval}-b{self.branch}{tag}"
