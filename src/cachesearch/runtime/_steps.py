"""Map denoiser calls to sampler steps, from counts alone (no timestep values, so no host sync).

A *step* (a row of a schedule's masks) is one timestep of the sampler: calls that evaluate the denoiser at
the same timestep share a row. Most schedulers call the denoiser once per timestep. Second-order schedulers
(Heun, DPM2; ``order == 2``) make ``2N - 1`` calls over ``N`` timesteps: the corrector of step ``s`` runs at
timestep ``s + 1``, next to the predictor of step ``s + 1``, so calls map to ``(c + 1) // 2``. PNDM (PLMS with
skipped Runge-Kutta steps) evaluates its second timestep twice (``N + 1`` calls): ``[0, 1, 1, 2, ...]``.
This is the official DeepCache helper's convention too (it indexes a call by its timestep's first position in
``scheduler.timesteps``), so a DeepCache setting means the same calls there and here.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from ..schedule import ScheduleError
from ..schedule._calls import first_calls, rows_of_calls

__all__ = ["call_starts", "count_calls", "steps_of_calls"]


def _pattern(scheduler: Any, num_steps: int, num_calls: int) -> str:
    if num_calls == num_steps:
        return "single"
    order = int(getattr(scheduler, "order", 1) or 1)
    if order == 2 and num_calls == 2 * num_steps - 1:
        return "order2"
    if type(scheduler).__name__ == "PNDMScheduler" and num_calls == num_steps + 1:
        return "pndm"
    raise ScheduleError(
        f"{type(scheduler).__name__} runs {num_calls} denoiser calls for {num_steps} steps, a pattern "
        f"cachesearch does not know how to align with the schedule's steps; supported: one call per step, "
        f"order-2 schedulers (2N-1 calls) and PNDM with skip_prk_steps (N+1 calls)"
    )


def steps_of_calls(scheduler: Any, num_steps: int, num_calls: int) -> list[int]:
    """Return, for each denoiser call of one sampling loop, the sampler step (row) it belongs to."""
    return rows_of_calls(_pattern(scheduler, num_steps, num_calls), num_steps)


def count_calls(scheduler: Any, num_steps: int, timesteps: Sequence[int] | None = None) -> int:
    """Denoiser calls one sampling loop of ``scheduler`` makes for ``num_steps`` steps (or explicit
    ``timesteps``): ``set_timesteps`` on a copy, so the pipeline's scheduler is untouched."""
    probe = copy.deepcopy(scheduler)
    if timesteps is not None:
        probe.set_timesteps(timesteps=list(timesteps), device="cpu")
    else:
        probe.set_timesteps(num_steps, device="cpu")
    return len(probe.timesteps)


def call_starts(
    scheduler: Any, num_steps: int, timesteps: Sequence[int] | None = None
) -> tuple[int, ...] | None:
    """Index of the first denoiser call of each step, where that is a sensible clock for call-counted periods.

    This is the official DeepCache helper's step index (the first position of the step's timestep in
    ``scheduler.timesteps``). On one-call samplers it is the step itself; on PNDM the repeated second
    timestep shifts every later step by one (10 steps: ``0, 1, 3, 4, …, 10``), and DeepCache's interval then
    counts calls exactly as the helper does. ``None`` (count steps) without a scheduler and for order-2
    samplers: there every step after the first starts at an odd call, so an even interval would never
    refresh the cache — the helper's behaviour there, not worth copying.

    Runs ``set_timesteps`` on a copy (offline, at compile time).
    """
    if scheduler is None or not hasattr(scheduler, "set_timesteps"):
        return None
    pattern = _pattern(scheduler, num_steps, count_calls(scheduler, num_steps, timesteps))
    if pattern == "order2":
        return None
    return first_calls(rows_of_calls(pattern, num_steps))
