"""How a sampler's denoiser calls map to schedule rows (one row per timestep), as pure functions of counts.

The runtime picks the pattern from a live scheduler (:func:`cachesearch.runtime.steps_of_calls`); re-timing a
schedule file picks it from the recorded scheduler name. One place knows the patterns.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["PATTERNS", "call_starts_for", "first_calls", "rows_of_calls"]

PATTERNS = ("single", "order2", "pndm")
"""``single``: one call per timestep; ``order2`` (Heun, DPM2): ``2N - 1`` calls, every timestep after the first
evaluated twice; ``pndm`` (PLMS, ``skip_prk_steps``): ``N + 1`` calls, the second timestep evaluated twice."""


def rows_of_calls(pattern: str, num_steps: int) -> list[int]:
    """The row (step) of every denoiser call of one sampling loop."""
    if pattern == "single":
        return list(range(num_steps))
    if pattern == "order2":
        return [(c + 1) // 2 for c in range(2 * num_steps - 1)]
    if pattern == "pndm":
        return [0, 0] if num_steps == 1 else [0, 1, *range(1, num_steps)]
    raise ValueError(f"pattern: expected one of {PATTERNS}, got {pattern!r}")


def first_calls(rows: Sequence[int]) -> tuple[int, ...]:
    """Index of the first call of each row."""
    starts: dict[int, int] = {}
    for c, r in enumerate(rows):
        starts.setdefault(r, c)
    return tuple(starts[r] for r in range(len(starts)))


def call_starts_for(scheduler_name: str, num_steps: int) -> tuple[int, ...] | None:
    """Call starts for call-counted periods (DeepCache) from a recorded scheduler class name: the PNDM pattern
    for ``PNDMScheduler``, ``None`` (count steps) otherwise — the same as the runtime decides for a live one."""
    if scheduler_name == "PNDMScheduler" and num_steps > 1:
        return first_calls(rows_of_calls("pndm", num_steps))
    return None
