"""Policy families. Each is a frozen, keyword-only dataclass of plain values that compiles to masks.

A policy's ``masks(space, num_steps)`` returns ``{block: (cond_mask, uncond_mask)}`` over the blocks of a
:class:`BlockSpace`; :func:`cachesearch.compile_schedule` turns that into a :class:`Schedule`. Policies never
name a model class: everything model-specific comes from the block space.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from ._blockspace import BlockKind, BlockSpace
from ._errors import ScheduleError
from ._ir import RECOMPUTE, REUSE, check_block_name, check_mask

__all__ = [
    "BlockCachingAuto",
    "BlockMask",
    "BlockProfile",
    "DeepCache",
    "Full",
    "Joint",
    "MaskPolicy",
    "PeriodicMask",
    "Policy",
    "StepSet",
    "policy_from_dict",
]

Masks = dict[str, tuple[str, str]]


def _int(path: str, value: Any, *, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ScheduleError(f"{path}: expected an integer, got {value!r}")
    value = int(value)
    if lo is not None and value < lo:
        raise ScheduleError(f"{path}: expected an integer >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise ScheduleError(f"{path}: expected an integer <= {hi}, got {value}")
    return value


def _float(path: str, value: Any, *, lo: float | None = None, strict_lo: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ScheduleError(f"{path}: expected a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ScheduleError(f"{path}: expected a finite number, got {value}")
    if lo is not None and (value <= lo if strict_lo else value < lo):
        raise ScheduleError(f"{path}: expected a number {'>' if strict_lo else '>='} {lo}, got {value}")
    return value


class Policy:
    """Base of all policy families (see module docstring)."""

    kind: ClassVar[str]

    def masks(self, space: BlockSpace, num_steps: int) -> Masks:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """Plain-value description for a schedule file's ``policy`` field."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):  # type: ignore[arg-type]
            if not f.init:
                continue
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out


class MaskPolicy(Policy):
    """A policy that decides which blocks recompute at each step (as opposed to which steps run)."""


@dataclass(frozen=True, kw_only=True)
class Full(MaskPolicy):
    """Recompute every block at every step (the uncached reference)."""

    kind: ClassVar[str] = "full"

    def masks(self, space: BlockSpace, num_steps: int) -> Masks:
        full = RECOMPUTE * num_steps
        return {n: (full, full) for n in space.names(BlockKind.STAGE)}


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
        object.__setattr__(self, "interval", _int("policy.interval", self.interval, lo=1))
        object.__setattr__(self, "branch", _int("policy.branch", self.branch, lo=0))
        if self.schedule not in ("uniform", "nonuniform"):
            raise ScheduleError(f"policy.schedule: expected 'uniform' or 'nonuniform', got {self.schedule!r}")
        if self.center is not None:
            object.__setattr__(self, "center", _int("policy.center", self.center, lo=0))
        object.__setattr__(self, "power", _float("policy.power", self.power, lo=1.0, strict_lo=True))

    def full_steps(self, num_steps: int) -> list[int]:
        """Steps that run the whole network."""
        if self.interval == 1:
            return list(range(num_steps))
        if self.schedule == "uniform":
            return list(range(0, num_steps, self.interval))
        center = round(0.3 * num_steps) if self.center is None else self.center
        if center >= num_steps:
            raise ScheduleError(f"policy.center: must be < the number of steps ({num_steps}), got {center}")
        n_full = math.ceil(num_steps / self.interval)
        return _quad_center_steps(num_steps, n_full, center, self.power)

    def masks(self, space: BlockSpace, num_steps: int) -> Masks:
        if not space.deepcache_branches:
            raise ScheduleError(f"DeepCache needs skip branches; the {space.family} denoiser has none")
        if self.branch >= len(space.deepcache_branches):
            raise ScheduleError(
                f"policy.branch: {self.branch} is out of range; this denoiser has branches "
                f"0..{len(space.deepcache_branches) - 1}"
            )
        keep = space.deepcache_branches[self.branch]
        full = set(self.full_steps(num_steps))
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


@dataclass(frozen=True, kw_only=True)
class BlockMask(MaskPolicy):
    """Explicit masks: ``BlockMask({"up_blocks.1": "R..R..", ...})``.

    A value may be a mask string or ``{"cond": ..., "uncond": ...}`` for per-branch CFG masks. Blocks not
    listed recompute every step.
    """

    kind: ClassVar[str] = "blockmask"
    blocks: tuple[tuple[str, str, str], ...]

    def __init__(self, blocks: Mapping[str, str | Mapping[str, str]] | None = None, **kw: Any) -> None:
        if blocks is None:
            blocks = kw.pop("masks", None)
        if kw:
            raise TypeError(f"BlockMask got unexpected arguments {sorted(kw)}")
        if not isinstance(blocks, Mapping) or not blocks:
            raise ScheduleError("BlockMask: expected a non-empty mapping of block name → mask")
        items = []
        for name, m in blocks.items():
            path = f'blocks["{name}"]'
            check_block_name(path, name)
            if isinstance(m, Mapping):
                extra = set(m) - {"cond", "uncond"}
                if extra or not {"cond", "uncond"} <= set(m):
                    raise ScheduleError(f"{path}: expected keys 'cond' and 'uncond', got {sorted(m)}")
                items.append((name, m["cond"], m["uncond"]))
            else:
                items.append((name, m, m))
        object.__setattr__(self, "blocks", tuple(items))

    def masks(self, space: BlockSpace, num_steps: int) -> Masks:
        names = [n for n, _, _ in self.blocks]
        space.check_disjoint(names)
        out = {}
        for name, c, u in self.blocks:
            path = f'blocks["{name}"]'
            check_mask(path if c == u else path + ".cond", c, num_steps)
            check_mask(path + ".uncond", u, num_steps)
            out[name] = (c, u)
        return {n: out[n] for n in space.order(names)}

    def to_dict(self) -> dict[str, Any]:
        # The masks themselves are the schedule's `blocks`; repeating them in the provenance adds nothing.
        return {"kind": self.kind}


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
            period = _int(f"policy.blocks[{i}].period", period, lo=1)
            phase = _int(f"policy.blocks[{i}].phase", phase, lo=0)
            start = _float(f"policy.blocks[{i}].start", start, lo=0.0)
            end = _float(f"policy.blocks[{i}].end", end, lo=0.0)
            if not start <= end <= 1.0:
                raise ScheduleError(f"policy.blocks[{i}]: expected 0 <= start <= end <= 1, got {start}, {end}")
            items.append((name, period, phase, start, end))
        object.__setattr__(self, "blocks", tuple(items))

    def masks(self, space: BlockSpace, num_steps: int) -> Masks:
        names = [b[0] for b in self.blocks]
        space.check_disjoint(names)
        out = {}
        for name, period, phase, start, end in self.blocks:
            lo, hi = round(start * num_steps), round(end * num_steps)
            m = "".join(
                RECOMPUTE if (s == 0 or not lo <= s < hi or (s - phase) % period == 0) else REUSE
                for s in range(num_steps)
            )
            out[name] = (m, m)
        return {n: out[n] for n in space.order(names)}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "blocks": [list(b) for b in self.blocks]}


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
        object.__setattr__(self, "threshold", _float("policy.threshold", self.threshold, lo=0.0))

    def masks(self, space: BlockSpace, num_steps: int) -> Masks:
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


_SPACINGS = ("scheduler", "linear", "power")


@dataclass(frozen=True, kw_only=True)
class StepSet(Policy):
    """Which sampler steps run.

    Either ``count`` steps with a spacing rule, or explicit ``timesteps`` (descending, in the scheduler's
    training range). Spacing ``"scheduler"`` uses the scheduler's own spacing for ``count`` steps (works
    with every scheduler); ``"linear"`` and ``"power"`` produce explicit timesteps
    ``t_i = (T-1) * (1 - i/count) ** power`` and need a scheduler that accepts ``timesteps=``.
    As a policy on its own, a step set recomputes every block at every step ("fewer steps").
    """

    kind: ClassVar[str] = "steps"
    count: int | None = None
    spacing: str = "scheduler"
    power: float = 1.0
    timesteps: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if (self.count is None) == (self.timesteps is None):
            raise ScheduleError("StepSet: give exactly one of `count` or `timesteps`")
        if self.count is not None:
            object.__setattr__(self, "count", _int("policy.count", self.count, lo=1))
        if self.spacing not in _SPACINGS:
            raise ScheduleError(f"policy.spacing: expected one of {list(_SPACINGS)}, got {self.spacing!r}")
        object.__setattr__(self, "power", _float("policy.power", self.power, lo=0.0, strict_lo=True))
        if self.timesteps is not None:
            ts = tuple(_int(f"policy.timesteps[{i}]", t, lo=0) for i, t in enumerate(self.timesteps))
            if not ts or any(a <= b for a, b in zip(ts, ts[1:])):
                raise ScheduleError("policy.timesteps: expected a non-empty, strictly descending list")
            object.__setattr__(self, "timesteps", ts)

    def resolve(self, num_train_timesteps: int) -> tuple[int, tuple[int, ...] | None]:
        """Return ``(num_steps, explicit timesteps or None)`` for a scheduler with that training range."""
        if self.timesteps is not None:
            if self.timesteps[0] >= num_train_timesteps:
                raise ScheduleError(
                    f"policy.timesteps: {self.timesteps[0]} is outside the scheduler's range "
                    f"0..{num_train_timesteps - 1}"
                )
            return len(self.timesteps), self.timesteps
        assert self.count is not None
        if self.spacing == "scheduler":
            return self.count, None
        p = 1.0 if self.spacing == "linear" else self.power
        top = num_train_timesteps - 1
        ts: list[int] = []
        for i in range(self.count):
            t = round(top * (1 - i / self.count) ** p)
            t = min(t, ts[-1] - 1) if ts else t
            ts.append(t)
        if ts[-1] < 0:
            raise ScheduleError(f"policy.count: {self.count} steps do not fit into {num_train_timesteps} timesteps")
        return self.count, tuple(ts)

    def masks(self, space: BlockSpace, num_steps: int) -> Masks:
        return Full().masks(space, num_steps)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind}
        if self.timesteps is not None:
            d["timesteps"] = list(self.timesteps)
        else:
            d.update(count=self.count, spacing=self.spacing)
            if self.spacing == "power":
                d["power"] = self.power
        return d


@dataclass(frozen=True, kw_only=True)
class Joint(Policy):
    """A step set combined with a mask policy compiled over those steps."""

    kind: ClassVar[str] = "joint"
    steps: StepSet
    mask: MaskPolicy

    def __post_init__(self) -> None:
        if not isinstance(self.steps, StepSet):
            raise ScheduleError("policy.steps: expected a StepSet")
        if not isinstance(self.mask, MaskPolicy):
            raise ScheduleError("policy.mask: expected a mask policy (DeepCache, BlockMask, ...)")

    def masks(self, space: BlockSpace, num_steps: int) -> Masks:
        return self.mask.masks(space, num_steps)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "steps": self.steps.to_dict(), "mask": self.mask.to_dict()}


_KINDS: dict[str, type[Policy]] = {
    p.kind: p for p in (Full, DeepCache, BlockMask, PeriodicMask, BlockCachingAuto, StepSet, Joint)
}


def policy_from_dict(data: Mapping[str, Any], path: str = "policy") -> Policy:
    """Rebuild a policy from its ``to_dict()`` form (the ``policy`` field of a schedule file).

    ``blockmask`` provenance carries no masks (they are the schedule's ``blocks``) and ``blockcaching``
    carries no profile, so those come back without them.
    """
    if not isinstance(data, Mapping) or "kind" not in data:
        raise ScheduleError(f"{path}: expected a mapping with a 'kind' key")
    kind = data["kind"]
    cls = _KINDS.get(kind)
    if cls is None:
        raise ScheduleError(f"{path}.kind: expected one of {sorted(_KINDS)}, got {kind!r}")
    args = {k: v for k, v in data.items() if k != "kind"}
    if cls is Joint:
        steps = policy_from_dict(args.get("steps", {}), f"{path}.steps")
        mask = policy_from_dict(args.get("mask", {}), f"{path}.mask")
        extra = set(args) - {"steps", "mask"}
        if extra:
            raise ScheduleError(f"{path}: unknown keys {sorted(extra)}")
        return Joint(steps=steps, mask=mask)  # type: ignore[arg-type]
    if cls is BlockMask:
        if set(args) - {"blocks"}:
            raise ScheduleError(f"{path}: unknown keys {sorted(set(args) - {'blocks'})}")
        return _ProvenanceOnly.of("blockmask")
    if cls is PeriodicMask and "blocks" in args:
        args["blocks"] = tuple(tuple(b) if isinstance(b, list) else b for b in args["blocks"])
    if cls is StepSet and args.get("timesteps") is not None:
        args["timesteps"] = tuple(args["timesteps"])
    valid = {f.name for f in fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = set(args) - valid
    if unknown:
        raise ScheduleError(f"{path}: unknown keys {sorted(unknown)} for kind {kind!r}; expected {sorted(valid)}")
    try:
        return cls(**args)
    except TypeError as e:
        raise ScheduleError(f"{path}: {e}") from e


@dataclass(frozen=True, kw_only=True)
class _ProvenanceOnly(MaskPolicy):
    """A policy known only by its kind (explicit masks live in the schedule itself)."""

    kind: ClassVar[str] = "blockmask"
    name: str = "blockmask"

    @staticmethod
    def of(name: str) -> _ProvenanceOnly:
        return _ProvenanceOnly(name=name)

    def masks(self, space: BlockSpace, num_steps: int) -> Masks:
        raise ScheduleError("this policy was loaded from a file without its masks; use the schedule's blocks")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.name}
