"""What the applier checks before it installs a schedule: the architecture fingerprint, the sampler, that every
listed block exists and is a block of the denoiser's adapter, and that no mask reuses where a second expert takes
over. Each refusal is one :class:`~cachesearch.schedule.ScheduleError` line naming the field."""

from __future__ import annotations

import warnings
from typing import Any

import torch

from ..adapters import adapter_for
from ..schedule import Schedule, ScheduleError, fingerprint_mismatch
from ._experts import expert_starts, fingerprint_module, fingerprint_of

__all__ = ["check_blocks", "check_expert_starts", "check_fingerprint", "check_scheduler", "submodule"]

Experts = list[tuple[str | None, torch.nn.Module]]


def check_fingerprint(schedule: Schedule, target: Any, denoiser: torch.nn.Module, experts: Experts,
                      force: bool) -> None:
    """Refuse (warn with ``force``) a schedule made for another architecture; with two experts, say when it was
    made for one of them alone."""
    msg = fingerprint_mismatch(schedule, type(denoiser).__name__, fingerprint_of(target))
    if msg is None:
        return
    if len(experts) > 1:
        names = " and ".join(a for a, _ in experts)
        one = [a for a, m in experts if fingerprint_module(m) == schedule.model.fingerprint]
        if one:
            msg = (f"model.fingerprint: schedule {schedule.name!r} was made for one expert ({one[0]}'s "
                   f"architecture) but this pipeline switches between {names} during a call; compile the "
                   f"schedule on the pipeline (cs.compile_schedule(pipe, ...)) so that its rows cover both")
    if not force:
        raise ScheduleError(msg + "; pass force=True to apply it anyway")
    warnings.warn(msg + "; applying anyway because force=True", stacklevel=3)


def check_scheduler(schedule: Schedule, pipe: Any) -> None:
    """Warn when the pipeline's scheduler is not the one the schedule was tuned for."""
    scheduler = getattr(pipe, "scheduler", None)
    expected = schedule.sampler.scheduler
    if scheduler is not None and type(scheduler).__name__ != expected:
        warnings.warn(
            f"schedule {schedule.name!r} was tuned for {expected}, the pipeline uses "
            f"{type(scheduler).__name__}; masks still align by step, but quality may differ",
            stacklevel=3,
        )


def check_blocks(schedule: Schedule, experts: Experts) -> None:
    """Every listed block must be a block of the denoiser's adapter (a module that is not one, such as a norm
    inside a transformer block, has no registered I/O contract nor cost). Denoisers no adapter covers (custom
    modules) are taken as they are."""
    for _, module in experts:
        try:
            space = adapter_for(module).block_space(module)
        except ScheduleError:
            continue
        space.check_names([bm.block for bm in schedule.blocks])


def check_expert_starts(schedule: Schedule, pipe: Any, experts: Experts) -> None:
    """In a pipeline with two experts, the step at which one takes over must recompute every block: a reuse
    there would hand the new expert what the other expert computed."""
    if len(experts) < 2 or pipe is None:
        return
    starts = expert_starts(pipe, schedule.num_steps, schedule.sampler.timesteps)
    for bm in schedule.blocks:
        for branch in ("cond",) if bm.shared else ("cond", "uncond"):
            mask = getattr(bm, branch)
            for s in starts:
                if mask[s] == ".":
                    field = f'blocks["{bm.block}"]' + ("" if bm.shared else f".{branch}")
                    names = " / ".join(str(a) for a, _ in experts)
                    raise ScheduleError(
                        f"{field}: step {s} is where this pipeline switches experts ({names}); reusing there "
                        f"would hand one expert the other's output: the mask must recompute (R) at step {s} "
                        f"(cs.compile_schedule(pipe, ...) does this)"
                    )


def submodule(denoiser: torch.nn.Module, name: str, experts: Experts, attr: str | None = None) -> torch.nn.Module:
    """The block ``name`` of ``denoiser`` (expert ``attr`` of a two-expert pipeline), or a refusal naming it."""
    try:
        return denoiser.get_submodule(name)
    except AttributeError:
        if len(experts) > 1:
            others = ", ".join(a for a, _ in experts if a != attr)
            raise ScheduleError(
                f'blocks["{name}"]: expert {attr} of this pipeline has no submodule {name!r} (it has in {others}); '
                f"a two-expert schedule's rows apply to whichever expert runs the step, so it may only name "
                f"blocks both experts have"
            ) from None
        raise ScheduleError(
            f'blocks["{name}"]: the {type(denoiser).__name__} has no submodule {name!r}'
        ) from None
