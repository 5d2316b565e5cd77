"""Map denoiser calls to sampler steps, from counts alone (no timestep values, so no host sync)."""

from __future__ import annotations

from typing import Any

from ..schedule import ScheduleError

__all__ = ["steps_of_calls"]


def steps_of_calls(scheduler: Any, num_steps: int, num_calls: int) -> list[int]:
    """Return, for each denoiser call of one sampling loop, the sampler step it belongs to.

    A *step* moves the sample from one noise level to the next. Most schedulers call the denoiser once
    per step. Second-order schedulers (Heun, DPM2; ``order == 2``) call it twice per step except the
    last (``2N - 1`` calls); PNDM (PLMS with skipped Runge-Kutta steps) spends two calls on its first step
    (``N + 1`` calls). Every call of a step follows that step's row of the mask.
    """
    if num_calls == num_steps:
        return list(range(num_steps))
    order = int(getattr(scheduler, "order", 1) or 1)
    if order == 2 and num_calls == 2 * num_steps - 1:
        return [c // 2 for c in range(num_calls)]
    if type(scheduler).__name__ == "PNDMScheduler" and num_calls == num_steps + 1:
        return [0, *range(num_steps)]
    raise ScheduleError(
        f"{type(scheduler).__name__} runs {num_calls} denoiser calls for {num_steps} steps, a pattern "
        f"cachesearch does not know how to align with the schedule's steps; supported: one call per step, "
        f"order-2 schedulers (2N-1 calls) and PNDM with skip_prk_steps (N+1 calls)"
    )
