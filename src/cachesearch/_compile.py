"""``compile_schedule``: turn a policy into a :class:`Schedule` for a concrete pipeline or denoiser."""

from __future__ import annotations

import inspect
from typing import Any

from ._util import utc_now
from ._version import __version__
from .models import block_space, family_of
from .runtime import call_starts, denoiser_of, expert_starts, fingerprint_of, resolve_runtime
from .schedule import (
    BlockEntry,
    BlockSpace,
    ModelInfo,
    Policy,
    Provenance,
    ReferenceRun,
    ReuseMode,
    RuntimePolicy,
    SamplerInfo,
    Schedule,
    ScheduleError,
)

__all__ = ["compile_schedule", "model_info", "default_name"]


def model_info(target: Any, source: str | None = None) -> ModelInfo:
    """Describe the denoiser of ``target`` for a schedule file."""
    denoiser = denoiser_of(target)
    if source is None:
        source = getattr(target, "_cachesearch_source", None) or getattr(denoiser, "_cachesearch_source", None)
    if source is None:
        path = (getattr(denoiser, "config", None) or {}).get("_name_or_path") or ""
        source = f"path:{path}" if path else "unknown"
    return ModelInfo(
        family=family_of(denoiser), cls=type(denoiser).__name__, fingerprint=fingerprint_of(target),
        source=source,
    )


def _recompute_at(mask: str, steps: tuple[int, ...]) -> str:
    return "".join("R" if s in steps else ch for s, ch in enumerate(mask))


def default_name(policy: Policy, num_steps: int) -> str:
    """A short file-friendly name for a compiled policy (each family names itself: ``Policy.default_name``)."""
    return policy.default_name(num_steps)


def _takes(fn: Any, name: str) -> bool:
    """Whether callable ``fn`` takes a parameter ``name`` (False when it has no inspectable signature)."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def scheduler_takes_timesteps(scheduler: Any) -> bool:
    """Whether a scheduler's ``set_timesteps`` takes explicit ``timesteps=`` (linear/power step sets need it)."""
    return _takes(scheduler.set_timesteps, "timesteps")


def pipeline_takes_timesteps(pipe: Any) -> bool:
    """Whether a pipeline's ``__call__`` takes ``timesteps=``: the first ``__call__`` along its MRO that names
    its parameters decides (a subclass that only forwards ``**kwargs``, as the embedded FLUX pipeline, is looked
    through); True for an object without an inspectable ``__call__`` (a bare sampler loop)."""
    for cls in type(pipe).__mro__:
        call = cls.__dict__.get("__call__")
        if call is None or cls is object:
            continue
        try:
            params = inspect.signature(call).parameters
        except (TypeError, ValueError):
            return True
        if "timesteps" in params:
            return True
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return False
    return True


def _reuse_of(policy: Policy, reuse: ReuseMode | str | None, order: int | None) -> tuple[ReuseMode, int | None]:
    """The reuse mode and Taylor order of a compiled schedule: the caller's, else the policy's, else output."""
    preferred = policy.reuse()
    if reuse is None:
        reuse = preferred[0] if preferred is not None else ReuseMode.OUTPUT
    try:
        reuse = ReuseMode(reuse)
    except ValueError:
        raise ScheduleError(f"reuse: expected one of {[m.value for m in ReuseMode]}, got {reuse!r}") from None
    if preferred is not None and preferred[0] == ReuseMode.TAYLOR.value:
        if reuse is not ReuseMode.TAYLOR:
            raise ScheduleError(
                f"reuse: a {policy.kind} policy forecasts its reused steps (reuse='taylor'), got {reuse.value!r}"
            )
        if order is not None and order != preferred[1]:
            raise ScheduleError(f"taylor_order: the policy's order is {preferred[1]}, got {order!r}")
        order = preferred[1]
    if reuse is ReuseMode.TAYLOR:
        return reuse, 1 if order is None else order
    if order is not None:
        raise ScheduleError(f"taylor_order: only meaningful with reuse='taylor', got reuse={reuse.value!r}")
    return reuse, None


def compile_schedule(
    target: Any,
    policy: Policy,
    *,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    reuse: ReuseMode | str | None = None,
    taylor_order: int | None = None,
    taylor_guard: bool | None = None,
    name: str | None = None,
    source: str | None = None,
    space: BlockSpace | None = None,
    reference: ReferenceRun | None = None,
) -> Schedule:
    """Compile ``policy`` for the denoiser of ``target`` (a diffusers pipeline or a bare denoiser).

    Args:
        target: pipeline (its ``unet`` and ``scheduler`` are used) or denoiser module.
        policy: ``DeepCache``, ``BlockMask``, ``StepSet``, ``Joint`` (step set + mask policy), ...
        num_inference_steps: sampler steps; required unless the policy carries a step set.
        guidance_scale: recorded in the schedule and returned by ``pipeline_kwargs()``; ``None`` leaves the
            pipeline default.
        reuse: ``"output"``, ``"residual"`` or ``"taylor"``; ``None`` (default): what the policy is made for
            (``TaylorSeer``: taylor, ``MiddleCache``: residual), else ``"output"``. A TaylorSeer policy refuses
            any other mode.
        taylor_order: order (1 or 2) of the ``taylor`` forecast; default the policy's, else 1.
        taylor_guard: a diverging forecast falls back to a lower order (:attr:`Schedule.taylor_guard`);
            default the policy's (``MiddleCacheAuto(..., guard=True)``), else off.
        name: schedule name (default derived from the policy).
        source: model source recorded in the file (default: what the loader recorded, else the path).
        space: a precomputed block space (skips rebuilding it).
        reference: the full-compute run the schedule is scored against (recorded in the file, format @2).
            Default: the same sampler at the same steps when the policy keeps the step count; none when the
            policy carries its own step set (the search passes its reference run).
    """
    if not isinstance(policy, Policy):
        raise ScheduleError(f"policy: expected a cachesearch policy (DeepCache, BlockMask, ...), got {policy!r}")
    if isinstance(policy, RuntimePolicy):
        return _compile_runtime(target, policy, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                                reuse=reuse, taylor_order=taylor_order, name=name, source=source, reference=reference,
                                taylor_guard=taylor_guard)
    reuse, taylor_order = _reuse_of(policy, reuse, taylor_order)
    if taylor_guard is None:
        taylor_guard = policy.taylor_guard()
    denoiser = denoiser_of(target)
    scheduler = getattr(target, "scheduler", None) if target is not denoiser else None
    space = space or block_space(denoiser)

    steps = policy.step_set()
    timesteps = None
    if steps is not None:
        if num_inference_steps is not None:
            raise ScheduleError("num_inference_steps: leave it unset when the policy carries a step set")
        n_train = int(getattr(getattr(scheduler, "config", None), "num_train_timesteps", 1000) or 1000)
        num_inference_steps, timesteps = steps.resolve(n_train)
        if timesteps is not None and scheduler is not None and not scheduler_takes_timesteps(scheduler):
            raise ScheduleError(
                f"policy.steps: {type(scheduler).__name__} does not accept explicit timesteps; use "
                f"StepSet(count=..., spacing='scheduler') or a scheduler that does (DPMSolverMultistepScheduler, "
                f"EulerDiscreteScheduler, DDPMScheduler, ...)"
            )
        if timesteps is not None and target is not denoiser and not pipeline_takes_timesteps(target):
            raise ScheduleError(
                f"policy.steps: {type(target).__name__} takes no explicit timesteps (FluxPipeline takes sigmas); "
                f"use StepSet(count=..., spacing='scheduler')"
            )
    _check_steps(num_inference_steps, "the masks cover")

    masks = policy.masks(space, num_inference_steps, call_starts=call_starts(scheduler, num_inference_steps, timesteps))
    space.check_names(list(masks))
    # Two experts (Wan 2.2 A14B): the step an expert takes over recomputes everything, as step 0 does.
    starts = expert_starts(target, num_inference_steps, timesteps) if target is not denoiser else ()
    if starts:
        masks = {b: (_recompute_at(c, starts), _recompute_at(u, starts)) for b, (c, u) in masks.items()}
    for block in masks:
        if reuse is ReuseMode.RESIDUAL and not space.get(block).residual_ok:
            raise ScheduleError(
                f'blocks["{block}"]: reuse: residual needs a block whose output has its input\'s shape; '
                f"use reuse='output' or finer blocks (attentions, equal-width resnets)"
            )
    sampler = _sampler(scheduler, num_inference_steps, guidance_scale, timesteps)
    return _schedule(target, policy, sampler, name=name, source=source,
                     reference=reference if reference is not None or steps is not None else _reference(sampler),
                     blocks=tuple(BlockEntry(block=b, cond=c, uncond=u) for b, (c, u) in masks.items()),
                     reuse=reuse, taylor_order=taylor_order, taylor_guard=bool(taylor_guard))


def _compile_runtime(target: Any, policy: RuntimePolicy, *, num_inference_steps: int | None,
                     guidance_scale: float | None, reuse: Any, taylor_order: int | None, name: str | None,
                     source: str | None, reference: ReferenceRun | None, taylor_guard: bool | None) -> Schedule:
    """A runtime schedule: the library's configs, complete and checked for ``target`` (see :func:`compile_schedule`)."""
    if reuse is not None or taylor_order is not None or taylor_guard:
        raise ScheduleError(f"reuse: a {policy.kind} policy reuses as {policy.library} does; leave reuse, "
                            f"taylor_order and taylor_guard unset")
    _check_steps(num_inference_steps, "the cache runs over")
    denoiser = denoiser_of(target)
    scheduler = getattr(target, "scheduler", None) if target is not denoiser else None
    runtime = resolve_runtime(policy, target, num_inference_steps)
    sampler = _sampler(scheduler, num_inference_steps, guidance_scale)
    return _schedule(target, policy, sampler, name=name, source=source, runtime=runtime,
                     reference=reference if reference is not None else _reference(sampler))


def _check_steps(num_inference_steps: Any, what: str) -> None:
    """Refuse a missing or non-positive step count (``what``: what the steps are, for the message)."""
    if num_inference_steps is None:
        raise ScheduleError(f"num_inference_steps: required (the number of sampler steps {what})")
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
        raise ScheduleError(f"num_inference_steps: expected a positive integer, got {num_inference_steps!r}")


def _sampler(scheduler: Any, num_inference_steps: int, guidance_scale: float | None,
             timesteps: tuple[int, ...] | None = None) -> SamplerInfo:
    """The sampler a schedule records: the scheduler's class (``unknown`` for a bare denoiser), steps, guidance."""
    return SamplerInfo(
        scheduler=type(scheduler).__name__ if scheduler is not None else "unknown",
        num_inference_steps=num_inference_steps,
        timesteps=timesteps,
        guidance_scale=None if guidance_scale is None else float(guidance_scale),
    )


def _reference(sampler: SamplerInfo) -> ReferenceRun:
    """The default reference run: the same sampler at the same steps, at full compute."""
    return ReferenceRun(scheduler=sampler.scheduler, num_inference_steps=sampler.num_inference_steps,
                        guidance_scale=sampler.guidance_scale)


def _schedule(target: Any, policy: Policy, sampler: SamplerInfo, *, name: str | None, source: str | None,
              reference: ReferenceRun | None, **kind: Any) -> Schedule:
    """A compiled schedule: what every kind records (name, model, sampler, policy, reference, provenance) and
    ``kind``'s own fields (the masks, or the runtime configs)."""
    return Schedule(
        name=name or default_name(policy, sampler.num_inference_steps),
        model=model_info(target, source),
        sampler=sampler,
        policy=policy.to_dict(),
        reference=reference,
        provenance=Provenance(cachesearch=__version__, created=utc_now()),
        **kind,
    )
