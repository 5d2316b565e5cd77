"""Quality gate of the embedded ``scenes`` model: attribute accuracy on held-out prompt x seed pairs.

Prompts come from ``np.random.default_rng([seed, EVAL_STREAM])``, image ``i`` uses generator seed
``EVAL_SEED_BASE + 100_000 * seed + i``; training uses neither. Set 0 is the gate. Pass: both object colors
and the background right (``color_both_acc``) on at least 90 % of 200 images at DDIM 50.

Usage::

    python -m cachesearch.embedded.scenes._gate [--pipeline DIR] [--out artifacts/embedded-scenes] [--n 200]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..shapes._gate import attribute_accuracies, gate_cli, generate_and_check
from . import DEFAULT_GUIDANCE_SCALE, DEFAULT_STEPS
from ._checker import check
from ._data import EVAL_SEED_BASE, EVAL_STREAM, random_caption

__all__ = ["PASS_THRESHOLD", "eval_pairs", "quality_gate"]

PASS_THRESHOLD = 0.9
"""Minimum ``color_both_acc`` of the gate."""

_SEEDS_PER_SET = 100_000


def eval_pairs(n: int, *, seed: int = 0) -> list[tuple[str, int]]:
    """The first ``n`` held-out (caption, generator seed) pairs of evaluation set ``seed``."""
    if not 1 <= n <= _SEEDS_PER_SET:
        raise ValueError(f"n must be in [1, {_SEEDS_PER_SET}], got {n}")
    rng = np.random.default_rng([seed, EVAL_STREAM])
    base = EVAL_SEED_BASE + _SEEDS_PER_SET * seed
    return [(random_caption(rng), base + i) for i in range(n)]


def quality_gate(
    pipe: object, n: int = 200, steps: int = DEFAULT_STEPS, guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
    seed: int = 0, *, batch_size: int = 50, return_images: bool = False, model: str = "scenes",
) -> dict:
    """Generate ``n`` held-out images and score them with :func:`~._checker.check`."""
    images, captions, results, seconds = generate_and_check(
        pipe, eval_pairs(n, seed=seed), check, steps=steps, guidance_scale=guidance_scale, batch_size=batch_size)

    out: dict = {
        "model": model, "n": n, "steps": steps, "guidance_scale": guidance_scale, "seed": seed,
        "scheduler": type(getattr(pipe, "scheduler", None)).__name__,
        **attribute_accuracies(results),
        "generation_seconds": round(seconds, 1),
    }
    shift = getattr(getattr(getattr(pipe, "scheduler", None), "config", None), "shift", None)
    if shift is not None:  # flow-matching sigmas: the sampling shift is part of the setting
        out["scheduler_shift"] = float(shift)
    if return_images:
        out["images"], out["captions"] = images, captions
    return out


def main(argv: list[str] | None = None) -> None:
    """Run the gate; write ``quality_gate.json``, ``samples.png`` and ``samples.txt`` to ``--out``."""
    from . import load_pipeline, pipeline_path

    gate_cli(argv, model="scenes", load_pipeline=load_pipeline, pipeline_path=pipeline_path,
             quality_gate=quality_gate, passed=lambda r: r["color_both_acc"] >= PASS_THRESHOLD,
             default_out=Path("artifacts/embedded-scenes"), steps=DEFAULT_STEPS,
             guidance_scale=DEFAULT_GUIDANCE_SCALE, grid_scale=2)


if __name__ == "__main__":
    main()
