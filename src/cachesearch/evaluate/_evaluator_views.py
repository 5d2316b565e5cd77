"""The evaluator's views of its fixtures and its compile-and-cost methods (a base class of
:class:`~._evaluator.Evaluator`, which sets the attributes used here in its constructor)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from cachesearch.runtime import count_calls
from cachesearch.schedule import ReferenceRun

if TYPE_CHECKING:
    from cachesearch.schedule import BlockSpace, Policy, Schedule

    from ._fixtures import Fixtures, ShardFn
    from ._prompts import PromptSet
    from ._reference import ReferenceInfo
    from ._scale_shift import FitCache

__all__ = ["EvaluatorViews"]


class EvaluatorViews:
    """Fixture delegation (prompts, latents, references) and compile/cost of an evaluator."""

    fixtures: Fixtures
    pipe: Any
    space: BlockSpace
    source: str
    num_inference_steps: int
    guidance_scale: float
    height: int
    width: int
    scale_shifts: FitCache
    _calls_cache: dict[tuple, int]
    cfg: bool  # a property of the evaluator (the adapter decides)

    # -- fixtures (delegated to self.fixtures) ----------------------------------------------------------
    def prompt_set(self, split: str) -> PromptSet:
        """The prompts and seeds of ``split`` (``"train"`` or ``"heldout"``)."""
        return self.fixtures.prompt_set(split)

    def latents(self, split: str) -> torch.Tensor:
        """Initial latents ``[N, *latent_shape]`` (float32, CPU) of ``split``; image ``i`` depends only on its
        seed. The per-image shape is the adapter's :meth:`~DenoiserAdapter.latent_shape`."""
        return self.fixtures.latents(split)

    def generate_batch(
        self, prompts: list[str], latents: torch.Tensor, seeds: list[int], kwargs: Mapping[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One pipeline call with the reference's size and guidance; returns (images float32 CPU, final
        latents). See :meth:`Fixtures.generate_batch`."""
        return self.fixtures.generate_batch(prompts, latents, seeds, kwargs)

    def check_no_schedule(self) -> None:
        """Raise :class:`ScheduleError` when a schedule is applied to the pipeline (references, baselines and
        profiles must be full compute)."""
        self.fixtures.check_no_schedule()

    def weights_id(self) -> str:
        """Hash of the pipeline's weights (computed once per evaluator)."""
        return self.fixtures.weights_id()

    @property
    def _weights_hash(self) -> str | None:
        # Kept for tests/search/test_study.py, which plants another hash to simulate fine-tuned weights.
        return self.fixtures._weights_hash

    @_weights_hash.setter
    def _weights_hash(self, value: str | None) -> None:
        self.fixtures._weights_hash = value

    def reference_key(self, split: str, images: slice | None = None) -> dict[str, Any]:
        """Everything the reference images of ``split`` (or of its range ``images``) depend on."""
        return self.fixtures.reference_key(split, images)

    def reference(self, split: str, shard: ShardFn | None = None) -> torch.Tensor:
        """Full-compute images [N, 3, H, W] in [0, 1] (float32, CPU) of ``split``, from disk when cached;
        ``shard`` builds its ranges elsewhere when it must be built (see :meth:`Fixtures.reference`)."""
        return self.fixtures.reference(split, shard)

    def reference_info(self, split: str) -> ReferenceInfo:
        """Where the reference of ``split`` came from (file, cache hit or rebuilt); computes it if needed."""
        return self.fixtures.reference_info(split)

    # -- compile and cost --------------------------------------------------------------------------------
    def compile(self, policy: Policy, *, name: str | None = None, fit: bool = True) -> Schedule:
        """Compile ``policy`` for this evaluator's pipeline, steps and guidance.

        A policy that asks for a scale-shift (:class:`~cachesearch.schedule.WithScaleShift`) gets it fitted on
        the train prompts (once per mask and method in this evaluator; later compiles of the same mask reuse
        it), unless ``fit=False`` (only the masks are wanted, e.g. to recognise a duplicate).
        """
        from cachesearch._compile import compile_schedule
        from cachesearch.schedule.policies import scale_shift_request

        carries_steps = policy.step_set() is not None
        schedule = compile_schedule(
            self.pipe,
            policy,
            num_inference_steps=None if carries_steps else self.num_inference_steps,
            guidance_scale=self.guidance_scale,
            name=name,
            source=self.source,
            space=self.space,
            reference=self.reference_run,
        )
        method = scale_shift_request(policy)
        if method is None or not fit:
            return schedule
        return self.scale_shifts.apply(self.pipe, schedule, method, list(self.prompt_set("train").prompts),
                                       height=self.height, width=self.width)

    @property
    def reference_run(self) -> ReferenceRun:
        """The full-compute run every schedule here is scored against (recorded in the schedules, format @2)."""
        return ReferenceRun(scheduler=type(self.pipe.scheduler).__name__, num_inference_steps=self.num_inference_steps,
                            guidance_scale=self.guidance_scale)

    def num_calls(self, kwargs: Mapping[str, Any]) -> tuple[int, int]:
        """``(steps, denoiser calls)`` the pipeline's scheduler makes for these pipeline kwargs
        (``num_inference_steps`` or ``timesteps``); Heun, for example, makes 2N-1 calls for N steps."""
        timesteps = kwargs.get("timesteps")
        steps = len(timesteps) if timesteps is not None else int(kwargs["num_inference_steps"])
        key = (steps, tuple(timesteps or ()))
        if key not in self._calls_cache:
            self._calls_cache[key] = count_calls(self.pipe.scheduler, steps, timesteps)
        return steps, self._calls_cache[key]

    def cost_ratio(self, schedule: Schedule) -> float | None:
        """Analytic denoiser MACs of ``schedule`` relative to the reference sampler's full compute.

        Every denoiser call of the candidate costs the MACs of the blocks its step recomputes (averaged over
        the CFG branches when guidance is on); the sum is divided by the reference's calls at full cost.
        ``None`` when the block space has no MACs, and for a runtime schedule (its library decides at run time
        what computes: :meth:`evaluate` counts it).
        """
        from cachesearch.runtime import steps_of_calls

        if schedule.runtime is not None:
            return None
        _, ref_calls = self.num_calls({"num_inference_steps": self.num_inference_steps})
        kwargs = schedule.pipeline_kwargs()
        steps, calls = self.num_calls(kwargs)
        step_of_call = steps_of_calls(self.pipe.scheduler, steps, calls)
        branches = [schedule.masks("cond")]
        if self.cfg:
            branches.append(schedule.masks("uncond"))
        per_step: list[float] = []
        for s in range(steps):
            costs = [self.space.cost_ratio({b: m[s] for b, m in masks.items()}, 1) for masks in branches]
            if any(c is None for c in costs):
                return None
            per_step.append(sum(costs) / len(costs))  # type: ignore[arg-type]
        return sum(per_step[step_of_call[c]] for c in range(calls)) / ref_calls

    def call_macs(self, schedule: Schedule) -> list[float] | None:
        """Denoiser MACs of each call the pipeline makes for one image under ``schedule`` (every CFG branch
        counted), from the block space's per-block MACs; ``None`` when it has none, and for a runtime schedule."""
        from cachesearch.runtime import steps_of_calls

        from ._macs import call_macs

        if schedule.runtime is not None:
            return None
        steps, calls = self.num_calls(schedule.pipeline_kwargs())
        return call_macs(self.space, schedule, steps_of_calls(self.pipe.scheduler, steps, calls), cfg=self.cfg)

    def image_macs(self, schedule: Schedule) -> float | None:
        """Denoiser MACs one image costs under ``schedule`` when nothing is shared (the full-compute reference:
        ``image_macs(compile(Full()))``)."""
        per_call = self.call_macs(schedule)
        return None if per_call is None else float(sum(per_call))
