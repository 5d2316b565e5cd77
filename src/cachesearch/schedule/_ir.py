"""The schedule IR: a recompute mask per block and step, plus what it was made for and how well it did."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ._apply import AppliedHandle, get_applier
from ._calls import call_starts_for
from ._errors import ScheduleError, short_repr
from ._mask import RECOMPUTE, REUSE, check_block_name, check_mask
from ._metrics import LOSS_STATS, LatencyMetrics, LossStats, Metrics, QualityMetrics, TailMetrics
from ._runtime import RuntimeCache
from ._scale_shift import ScaleShift
from .policies import policy_format, policy_from_dict

__all__ = [
    "FORMAT",
    "FORMATS",
    "FORMAT_V1",
    "FORMAT_V2",
    "FORMAT_V3",
    "FORMAT_V4",
    "LOSS_STATS",
    "RECOMPUTE",
    "REUSE",
    "BlockEntry",
    "LatencyMetrics",
    "LossStats",
    "Metrics",
    "ModelInfo",
    "Provenance",
    "QualityMetrics",
    "ReferenceRun",
    "ReuseMode",
    "RuntimeCache",
    "SamplerInfo",
    "ScaleShift",
    "Schedule",
    "TAYLOR_ORDERS",
    "TailMetrics",
]

FORMAT_V1 = "cachesearch/schedule@1"
FORMAT_V2 = "cachesearch/schedule@2"
FORMAT_V3 = "cachesearch/schedule@3"
FORMAT_V4 = "cachesearch/schedule@4"
"""Adds ``metrics.tail`` (the distribution of per-image losses: mean, median, p90, CVaR, max, share over a
threshold, the mean's 95 % interval, on the train and held-out prompts), runtime schedules (``runtime:``
instead of ``reuse``/``blocks``) and ``metrics.latency.cost_ratio_heldout``."""
FORMATS = (FORMAT_V1, FORMAT_V2, FORMAT_V3, FORMAT_V4)
"""Every format version this release reads. A file is written in the oldest version that can express it."""
FORMAT = FORMAT_V4
"""The newest format version."""
TAYLOR_ORDERS = (1, 2)
"""Orders of the ``taylor`` forecast the runtime implements."""


class ReuseMode(str, enum.Enum):
    """How a block that is not recomputed produces its output."""

    OUTPUT = "output"  # return the stored output
    RESIDUAL = "residual"  # input + (stored output - stored input)
    TAYLOR = "taylor"  # Taylor forecast from the last recomputes (TaylorSeer; format @3)


@dataclass(frozen=True, kw_only=True)
class BlockEntry:
    """The recompute mask of one block; ``uncond`` differs from ``cond`` only for per-branch CFG masks."""

    block: str
    cond: str
    uncond: str

    @property
    def shared(self) -> bool:
        """True when both CFG branches follow the same mask."""
        return self.cond == self.uncond


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """The denoiser a schedule was made for."""

    family: str
    cls: str
    fingerprint: str
    source: str


@dataclass(frozen=True, kw_only=True)
class SamplerInfo:
    """The sampler a schedule was made for; ``timesteps`` is set for non-uniform step sets."""

    scheduler: str
    num_inference_steps: int
    timesteps: tuple[int, ...] | None = None
    guidance_scale: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.num_inference_steps, bool) or not isinstance(self.num_inference_steps, int):
            raise ScheduleError("sampler.num_inference_steps: expected an integer")
        if self.num_inference_steps < 1:
            raise ScheduleError("sampler.num_inference_steps: expected a positive integer")
        if self.timesteps is not None and len(self.timesteps) != self.num_inference_steps:
            raise ScheduleError(
                f"sampler.timesteps: has {len(self.timesteps)} entries but num_inference_steps is "
                f"{self.num_inference_steps}; they must agree"
            )


@dataclass(frozen=True, kw_only=True)
class ReferenceRun:
    """The full-compute run a schedule's quality was scored against (format @2).

    A ``steps8`` schedule found by a 20-step search says ``num_inference_steps: 20`` here, so
    ``cachesearch evaluate`` and ``generate`` compare against the same reference by default.
    """

    scheduler: str
    num_inference_steps: int
    guidance_scale: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.num_inference_steps, bool) or not isinstance(self.num_inference_steps, int):
            raise ScheduleError("reference.num_inference_steps: expected an integer")
        if self.num_inference_steps < 1:
            raise ScheduleError("reference.num_inference_steps: expected a positive integer")


@dataclass(frozen=True, kw_only=True)
class Provenance:
    """Where a schedule file came from."""

    cachesearch: str
    created: str
    study: str | None = None
    trial: int | None = None
    prompts: str | None = None
    git: str | None = None
    note: str | None = None
    """How this schedule was derived from another one (format @2), e.g. by :meth:`Schedule.for_steps`."""


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """A caching schedule: for every listed block and sampler step, recompute (``R``) or reuse (``.``) — or, a
    *runtime* schedule, a library's own dynamic cache (:attr:`runtime`: the library, its version and plain configs;
    no blocks).

    Build one with :func:`cachesearch.compile_schedule` or load one with :func:`cachesearch.load_schedule`.
    """

    name: str
    model: ModelInfo
    sampler: SamplerInfo
    blocks: tuple[BlockEntry, ...] = ()
    reuse: ReuseMode = ReuseMode.OUTPUT
    taylor_order: int | None = None
    """Order (1 or 2) of the forecast when :attr:`reuse` is ``taylor`` (format @3; ``None`` otherwise): a reused
    block returns ``y(s) = Σ_k Δᵏy · (s − s_last)ᵏ / k!`` from its finite differences over its last recomputes."""
    taylor_guard: bool = False
    """With ``reuse: taylor``: a forecast whose next term outgrows the one before it (or is not finite) stops at
    the lower order, per batch row, on the device (format @4; ``False``: the full series, as diffusers'
    TaylorSeer). See :mod:`cachesearch.runtime._taylor`."""
    policy: Mapping[str, Any] = field(default_factory=dict)
    metrics: Metrics | None = None
    provenance: Provenance | None = None
    reference: ReferenceRun | None = None
    scale_shift: ScaleShift | None = None
    """Per (block, step, channel) scale and shift applied to reused outputs (format @2; a safetensors sidecar
    beside the file). Made by :func:`cachesearch.fit_scale_shift`."""
    runtime: RuntimeCache | None = None
    """What a runtime schedule enables (format @4): the library's own cache, decided at run time on the device;
    ``None`` for a mask schedule."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ScheduleError("name: expected a non-empty string")
        if self.runtime is not None:
            self._check_runtime()
            return
        if not isinstance(self.reuse, ReuseMode):
            try:
                object.__setattr__(self, "reuse", ReuseMode(self.reuse))
            except ValueError:
                raise ScheduleError(
                    f"reuse: expected one of {[m.value for m in ReuseMode]}, got {short_repr(self.reuse)}"
                ) from None
        self._check_taylor_order()
        if not self.blocks:
            raise ScheduleError("blocks: expected at least one block")
        seen: set[str] = set()
        n = self.sampler.num_inference_steps
        for bm in self.blocks:
            path = f'blocks["{bm.block}"]'
            check_block_name(path, bm.block)
            if bm.block in seen:
                raise ScheduleError(f"{path}: listed twice")
            seen.add(bm.block)
            check_mask(path if bm.shared else path + ".cond", bm.cond, n)
            if not bm.shared:
                check_mask(path + ".uncond", bm.uncond, n)
        for bm in self.blocks:
            parts = bm.block.split(".")
            for i in range(1, len(parts)):
                if ".".join(parts[:i]) in seen:
                    raise ScheduleError(
                        f'blocks["{bm.block}"] is inside blocks["{".".join(parts[:i])}"], which is also '
                        f"listed; list either the stage or its layers, not both"
                    )
        if self.reuse is ReuseMode.TAYLOR:
            for bm in self.blocks:
                if not bm.shared:
                    raise ScheduleError(
                        f'blocks["{bm.block}"]: reuse: taylor forecasts the whole batch from its own recomputes; '
                        f"per-branch (cond/uncond) masks are not supported with it: give both branches one mask"
                    )
        if self.scale_shift is not None:
            self._check_scale_shift()

    def _check_runtime(self) -> None:
        if not isinstance(self.runtime, RuntimeCache):
            raise ScheduleError(f"runtime: expected a RuntimeCache or None, got {short_repr(self.runtime)}")
        if self.blocks:
            raise ScheduleError("blocks: a runtime schedule has no masks (the library decides at run time); "
                                "give either runtime or blocks")
        if self.reuse != ReuseMode.OUTPUT or self.taylor_order is not None or self.taylor_guard:
            raise ScheduleError("reuse: a runtime schedule reuses as its library does; leave reuse, taylor_order "
                                "and taylor_guard unset")
        if self.scale_shift is not None:
            raise ScheduleError("scale_shift: only mask schedules carry a scale-shift")
        object.__setattr__(self, "reuse", ReuseMode.OUTPUT)

    def _check_taylor_order(self) -> None:
        order = self.taylor_order
        if not isinstance(self.taylor_guard, bool):
            raise ScheduleError(f"taylor_guard: expected true or false, got {short_repr(self.taylor_guard)}")
        if self.taylor_guard and self.reuse is not ReuseMode.TAYLOR:
            raise ScheduleError(f"taylor_guard: only meaningful with reuse: taylor (this schedule reuses "
                                f"{self.reuse.value!r}); leave it unset")
        if self.reuse is not ReuseMode.TAYLOR:
            if order is not None:
                raise ScheduleError(
                    f"taylor_order: only meaningful with reuse: taylor (this schedule reuses "
                    f"{self.reuse.value!r}); leave it unset"
                )
            return
        if order is None:
            order = 1
        if isinstance(order, bool) or not isinstance(order, int) or order not in TAYLOR_ORDERS:
            raise ScheduleError(
                f"taylor_order: expected 1 or 2 (the order of the Taylor forecast), got {short_repr(order)}"
            )
        object.__setattr__(self, "taylor_order", order)

    def _check_scale_shift(self) -> None:
        ss = self.scale_shift
        if not isinstance(ss, ScaleShift):
            raise ScheduleError(f"scale_shift: expected a ScaleShift or None, got {short_repr(ss)}")
        masks = {bm.block: bm for bm in self.blocks}
        for block, step in ss:
            bm = masks.get(block)
            if bm is None:
                raise ScheduleError(f"scale_shift: block {block!r} is not listed in blocks")
            if step >= self.num_steps:
                raise ScheduleError(f"scale_shift[{block!r}, {step}]: the schedule has {self.num_steps} steps")
            if REUSE not in (bm.cond[step], bm.uncond[step]):
                raise ScheduleError(
                    f"scale_shift[{block!r}, {step}]: the block recomputes at step {step}; only reused outputs "
                    f"are adjusted"
                )

    # -- views ---------------------------------------------------------------------------------------
    @property
    def format(self) -> str:
        """The format version this schedule is written in: the oldest that can express it."""
        latency = self.metrics.latency if self.metrics is not None else None
        tail = self.metrics is not None and self.metrics.tail is not None
        if tail or self.runtime is not None or self.taylor_guard or policy_format(self.policy) >= 4 or (
                latency is not None and latency.cost_ratio_heldout is not None):
            return FORMAT_V4
        if self.reuse is ReuseMode.TAYLOR or policy_format(self.policy) >= 3:
            return FORMAT_V3
        derived = self.provenance is not None and self.provenance.note is not None
        newer = self.reference is not None or derived or self.scale_shift is not None
        return FORMAT_V2 if newer else FORMAT_V1

    @property
    def kind(self) -> str:
        """``"runtime"`` (a library's dynamic cache, :attr:`runtime`) or ``"static"`` (masks)."""
        return "runtime" if self.runtime is not None else "static"

    @property
    def num_steps(self) -> int:
        """Number of sampler steps the masks cover."""
        return self.sampler.num_inference_steps

    @property
    def per_branch(self) -> bool:
        """True when some block has different masks for the CFG cond and uncond branches."""
        return any(not bm.shared for bm in self.blocks)

    def masks(self, branch: str = "cond") -> dict[str, str]:
        """Block → mask string for one CFG branch (``"cond"`` or ``"uncond"``)."""
        if branch not in ("cond", "uncond"):
            raise ScheduleError(f"branch: expected 'cond' or 'uncond', got {short_repr(branch)}")
        return {bm.block: getattr(bm, branch) for bm in self.blocks}

    def recompute_fraction(self) -> float:
        """Fraction of (block, step) cells that recompute, averaged over branches (a runtime schedule decides at
        run time: :class:`ScheduleError`)."""
        if self.runtime is not None:
            raise ScheduleError(f"schedule {self.name!r} is a runtime schedule: what recomputes is decided at run "
                                f"time; count it (cachesearch.models._executed_cost.ExecutedCost)")
        cells = [c for bm in self.blocks for c in bm.cond + bm.uncond]
        return cells.count(RECOMPUTE) / len(cells)

    def pipeline_kwargs(self) -> dict[str, Any]:
        """Keyword arguments that make a diffusers pipeline call run exactly this schedule's steps."""
        kwargs: dict[str, Any] = {}
        if self.sampler.timesteps is not None:
            kwargs["timesteps"] = list(self.sampler.timesteps)
        else:
            kwargs["num_inference_steps"] = self.sampler.num_inference_steps
        if self.sampler.guidance_scale is not None:
            kwargs["guidance_scale"] = self.sampler.guidance_scale
        return kwargs

    def for_steps(self, num_steps: int) -> Schedule:
        """This schedule's recorded policy re-compiled for ``num_steps`` sampler steps, without the model.

        Metrics are dropped (they were measured at the old step count) and the provenance says where the new
        schedule came from. A hand-made mask (policy kind ``blockmask``) or a policy that needs the model or a
        profile again raises :class:`ScheduleError` saying what to do.
        """
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ScheduleError(f"num_steps: expected a positive integer, got {short_repr(num_steps)}")
        if self.runtime is not None:
            raise ScheduleError(
                f"policy: schedule {self.name!r} is a runtime schedule ({self.runtime.library}); compile its policy "
                f"again for {num_steps} steps: cs.compile_schedule(pipe, policy, num_inference_steps={num_steps})"
            )
        if self.policy.get("kind") == "blockmask":
            raise ScheduleError(
                f"policy: schedule {self.name!r} is a hand-made mask (policy kind 'blockmask'): there is no policy "
                f"to re-compile for {num_steps} steps; write a mask of {num_steps} characters per block, or compile "
                f"a policy with cs.compile_schedule(pipe, policy, num_inference_steps={num_steps})"
            )
        policy = policy_from_dict(self.policy)
        masks = {bm.block: (bm.cond, bm.uncond) for bm in self.blocks}
        starts = call_starts_for(self.sampler.scheduler, num_steps)
        new_policy, new_masks = policy.retime(masks, num_steps, call_starts=starts)
        ref = self.reference
        same_steps = ref is not None and ref.num_inference_steps == self.num_steps
        note = f"for_steps({num_steps}) of {self.name!r} ({self.num_steps} steps); metrics dropped"
        if self.scale_shift is not None:
            note += "; scale-shift dropped (fit it again with cs.fit_scale_shift)"
        old = self.provenance
        return replace(
            self,
            name=new_policy.default_name(num_steps),
            sampler=SamplerInfo(scheduler=self.sampler.scheduler, num_inference_steps=num_steps,
                                guidance_scale=self.sampler.guidance_scale),
            blocks=tuple(BlockEntry(block=b, cond=c, uncond=u) for b, (c, u) in new_masks.items()),
            policy=new_policy.to_dict(),
            metrics=None,
            scale_shift=None,
            reference=replace(ref, num_inference_steps=num_steps) if same_steps else None,
            provenance=Provenance(cachesearch=old.cachesearch, created=old.created, note=note) if old else
            Provenance(cachesearch="unknown", created="unknown", note=note),
        )

    def with_updates(self, **changes: Any) -> Schedule:
        """A copy with some fields replaced (re-validated)."""
        return replace(self, **changes)

    # -- files ---------------------------------------------------------------------------------------
    def to_yaml(self) -> str:
        """Serialise to YAML text in :attr:`format` (stable, diff-friendly)."""
        from ._yaml import dump_schedule

        return dump_schedule(self)

    def save(self, path: str | Path) -> Path:
        """Write the schedule to ``path`` atomically (temp file + rename); returns the path.

        A schedule with :attr:`scale_shift` also writes its sidecar ``<stem>.scale_shift.safetensors`` beside it
        (written first, so the YAML never names a file that is not there)."""
        from ._yaml import save_schedule

        return save_schedule(self, path)

    # -- runtime -------------------------------------------------------------------------------------
    def apply(self, pipe_or_denoiser: Any, **options: Any) -> AppliedHandle:
        """Install this schedule on a diffusers pipeline (or bare denoiser); returns a removable handle.

        Options (``force``, ``compile``, ``cfg``) are those of :func:`cachesearch.runtime.apply_schedule`, which
        registers itself here when :mod:`cachesearch.runtime` is imported (the schedule layer never imports it).
        """
        return get_applier()(self, pipe_or_denoiser, **options)

    def applied(self, pipe_or_denoiser: Any, **options: Any) -> AppliedHandle:
        """Context manager form of :meth:`apply`: hooks are removed on exit, even after an exception."""
        return self.apply(pipe_or_denoiser, **options)
