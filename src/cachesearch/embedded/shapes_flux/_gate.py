"""Quality gate of the embedded ``shapes-flux`` model: the ``scenes`` gate's held-out pairs and checker.

Same 200 held-out (caption, seed) pairs as ``scenes`` (``scenes._gate.eval_pairs``, set 0; training uses
neither their captions' stream nor their seeds), at the model's default 28 flow-matching steps. Pass: both
object colors right (``fg_acc``) on at least 95 % of the images; background and shape accuracy are reported.

Usage::

    python -m cachesearch.embedded.shapes_flux._gate [--pipeline DIR] [--out artifacts/embedded-shapes-flux]
"""

from __future__ import annotations

from pathlib import Path

from ..scenes._gate import quality_gate as _scenes_gate
from ..shapes._gate import gate_cli
from . import DEFAULT_GUIDANCE_SCALE, DEFAULT_STEPS

__all__ = ["PASS_THRESHOLD", "quality_gate"]

PASS_THRESHOLD = 0.95
"""Minimum ``fg_acc`` (both object colors right) of the gate."""


def quality_gate(pipe: object, n: int = 200, steps: int = DEFAULT_STEPS,
                 guidance_scale: float = DEFAULT_GUIDANCE_SCALE, seed: int = 0, **kwargs) -> dict:
    """The ``scenes`` gate's generation and scores at this model's defaults."""
    return _scenes_gate(pipe, n=n, steps=steps, guidance_scale=guidance_scale, seed=seed, model="shapes-flux",
                        **kwargs)


def main(argv: list[str] | None = None) -> None:
    """Run the gate; write ``quality_gate.json``, ``samples.png`` and ``samples.txt`` to ``--out``."""
    from . import load_pipeline, pipeline_path

    gate_cli(argv, model="shapes-flux", load_pipeline=load_pipeline, pipeline_path=pipeline_path,
             quality_gate=quality_gate, passed=lambda r: r["fg_acc"] >= PASS_THRESHOLD,
             default_out=Path("artifacts/embedded-shapes-flux"), steps=DEFAULT_STEPS,
             guidance_scale=DEFAULT_GUIDANCE_SCALE, grid_scale=2)


if __name__ == "__main__":
    main()
