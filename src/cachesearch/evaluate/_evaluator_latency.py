"""The evaluator's latency measurements (a base class of :class:`~._evaluator.Evaluator`, which sets the
attributes used here in its constructor)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from ._config import EvalConfig
    from ._fixtures import Fixtures
    from ._latency import LatencyStats
    from ._prompts import PromptSet

__all__ = ["EvaluatorLatency"]


class EvaluatorLatency:
    """Latency of one pipeline call with a schedule's kwargs, and of the full-compute baseline (measured once)."""

    config: EvalConfig
    pipe: Any
    fixtures: Fixtures
    device: torch.device
    dtype: torch.dtype
    num_inference_steps: int
    _baseline: LatencyStats | None
    # methods of the evaluator and its other bases
    prompt_set: Callable[[str], PromptSet]
    latents: Callable[[str], torch.Tensor]
    check_no_schedule: Callable[[], None]
    report_progress: Callable[[str, int, int], None]

    def _latency_fn(self, kwargs: Mapping[str, Any]) -> Callable[[], object]:
        ps = self.prompt_set("train")
        k = min(self.config.latency_batch, len(ps))
        prompts = list(ps.prompts[:k])
        latents = self.latents("train")[:k].to(self.device, self.dtype)
        call = self.fixtures.reference_call()

        def run() -> object:
            return self.pipe(prompt=prompts, latents=latents, output_type="pt", **call, **kwargs)

        return run

    def _measure(self, kwargs: Mapping[str, Any], stage: str) -> LatencyStats:
        from ._latency import remeasure_if_noisy

        self.report_progress(stage, 0, 1)
        stats = remeasure_if_noisy(
            self._latency_fn(kwargs),
            warmup=self.config.latency_warmup,
            repeats=self.config.latency_repeats,
            device=self.device,
            max_remeasures=1,
        )
        self.report_progress(stage, 1, 1)
        return stats

    def baseline_latency(self) -> LatencyStats:
        """Latency of one full-compute pipeline call, measured once in this process and kept."""
        if self._baseline is None:
            self.check_no_schedule()
            self._baseline = self._measure({"num_inference_steps": self.num_inference_steps}, "latency (full)")
        return self._baseline
