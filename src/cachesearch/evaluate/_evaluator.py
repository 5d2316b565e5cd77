"""The evaluator: run a schedule on a prompt set from the reference's initial latents and score it.

One :class:`Evaluator` holds a loaded pipeline, its block space with per-block MACs, the perceptual metric
and the :class:`~._fixtures.Fixtures` (prompt sets, initial latents, full-compute references from the
on-disk cache). It compiles policies for its pipeline, prices them analytically (:meth:`Evaluator.cost_ratio`),
measures latency and scores candidates against the references. Everything it knows about the denoiser's
family (latent shape, default size, classifier-free guidance) comes from the denoiser's adapter
(:func:`cachesearch.adapters.adapter_for`).

Failures of a candidate (NaN/inf outputs, CUDA out-of-memory, any exception) become an invalid
:class:`EvalResult` with the reason; the schedule's hooks are always removed first.
"""

from __future__ import annotations

import gc
import logging
import math
import time
from typing import TYPE_CHECKING, Any

import torch

from cachesearch.runtime import denoiser_of, steps_of_calls
from cachesearch.schedule import (
    BlockSpace,
    Full,
    Schedule,
    ScheduleError,
    fingerprint_mismatch,
)

from ._config import SCHEDULER_NAMES, EvalConfig, EvalConfigError, make_scheduler
from ._errors import InvalidOutputError
from ._evaluator_latency import EvaluatorLatency
from ._evaluator_runtime import EvaluatorRuntime
from ._evaluator_scoring import EvaluatorScoring
from ._evaluator_views import EvaluatorViews
from ._fixtures import Fixtures, ProgressFn, ReferenceSampler, resolve_sampler
from ._prefix import PrefixCache
from ._result import EvalResult
from ._scale_shift import FitCache

if TYPE_CHECKING:
    from cachesearch.adapters import DenoiserAdapter
    from cachesearch.models._executed_cost import ExecutedCost
    from cachesearch.models._loaders import LoadedModel

    from ._latency import LatencyStats
    from ._perceptual import PerceptualMetric

__all__ = ["SCHEDULER_NAMES", "EvalConfig", "EvalConfigError", "EvalResult", "Evaluator", "make_scheduler"]

logger = logging.getLogger(__name__)


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


class Evaluator(EvaluatorViews, EvaluatorLatency, EvaluatorRuntime, EvaluatorScoring):
    """Evaluate caching schedules of one model and sampler against cached full-compute references.

    Args:
        config: what to evaluate on (see :class:`EvalConfig`).
        progress: optional callback ``progress(stage, done, total)`` called as images are generated.
        model: an already loaded model (``LoadedModel``) on ``config.device``; ``config.model`` and
            ``config.dtype`` are then not used for loading. Default: ``load_model(config.model, ...)``.

    Attributes:
        config, pipe, denoiser: the configuration, pipeline and denoiser.
        adapter: the denoiser's family adapter (latent shape, default size, CFG).
        source: normalised model source (``"embedded:shapes"``).
        space: the block space with per-block MACs.
        fingerprint: architecture fingerprint of the denoiser.
        metric, metric_name: the perceptual metric and the name of the one actually used.
        random_weights: ``True`` for random-weight models (quality numbers describe nothing real).
        sampler: the resolved reference sampler; also as ``num_inference_steps``, ``guidance_scale``,
            ``height``, ``width``.
        fixtures: prompt sets, initial latents and references (:class:`~._fixtures.Fixtures`).
    """

    def __init__(
        self, config: EvalConfig, *, progress: ProgressFn | None = None, model: LoadedModel | None = None
    ) -> None:
        if not isinstance(config, EvalConfig):
            raise TypeError(f"config: expected an EvalConfig, got {type(config).__name__}")
        from cachesearch.models import adapter_for, block_space
        from cachesearch.runtime import fingerprint_of

        from ._quality import get_perceptual_metric

        self.config = config
        self._progress = progress
        self.device = torch.device(config.device)
        if model is None:
            from cachesearch.models._loaders import load_model

            self.report_progress("load model", 0, 1)
            model = load_model(config.model, device=self.device, dtype=config.torch_dtype)
            self.report_progress("load model", 1, 1)
        on = next(model.denoiser.parameters()).device
        if on.type != self.device.type:
            raise EvalConfigError(
                f"EvalConfig.device: {config.device!r}, but the given model is on {on}; move it (pipe.to(...)) or "
                f"set device={on.type!r}"
            )
        self.model = model
        self.pipe = model.pipe
        self.denoiser = model.denoiser
        self.adapter: DenoiserAdapter = adapter_for(self.denoiser)
        self.source: str = model.source
        self.random_weights: bool = bool(model.random_weights)
        if config.scheduler is not None:
            self.pipe.scheduler = make_scheduler(config.scheduler, self.pipe.scheduler)
        self.pipe.set_progress_bar_config(disable=True)
        self.sampler: ReferenceSampler = resolve_sampler(config, self.pipe, self.adapter, self.source)
        self.space: BlockSpace = block_space(self.denoiser, with_costs=True, **self._costed_size())
        self.fingerprint: str = fingerprint_of(self.pipe)  # both experts' where the pipeline has two
        self.metric: PerceptualMetric = get_perceptual_metric(config.metric, device=self.device)
        self.metric_name: str = self.metric.name
        self.num_inference_steps: int = self.sampler.num_inference_steps
        self.guidance_scale: float = self.sampler.guidance_scale
        self.height: int = self.sampler.height
        self.width: int = self.sampler.width
        self.fixtures = Fixtures(
            config=config,
            pipe=self.pipe,
            denoiser=self.denoiser,
            adapter=self.adapter,
            source=self.source,
            fingerprint=self.fingerprint,
            sampler=self.sampler,
            device=self.device,
            progress=progress,
        )
        self._baseline: LatencyStats | None = None
        self._calls_cache: dict[tuple, int] = {}
        self._executed_cost: ExecutedCost | None = None
        self.scale_shifts = FitCache()
        """Scale-shifts fitted for policies that ask for one, by mask and method (with their fit times)."""
        self.prefixes = PrefixCache(config.prefix_cache_mb << 20)
        """Exact prefix sharing between the candidates this evaluator runs (:mod:`._prefix`)."""

    def _costed_size(self) -> dict[str, Any]:
        """The latent size (and latent frames, for video) per-block MACs are counted at: the reference's."""
        from cachesearch.models._block_costs import costed_latent_size

        h, w, f = costed_latent_size(self.adapter, self.pipe, self.sampler.height, self.sampler.width,
                                     self.sampler.num_frames)
        return {"latent_size": (h, w), **({} if f is None else {"frames": f})}

    # -- resolved settings ------------------------------------------------------------------------------
    def report_progress(self, stage: str, done: int, total: int) -> None:
        """Pass ``(stage, done, total)`` to the progress callback given to the constructor, if any."""
        if self._progress is not None:
            self._progress(stage, done, total)

    @property
    def cfg(self) -> bool:
        """Whether each step also runs the uncond branch: a classifier-free-guidance batch (uncond + cond), or a
        pass of its own (``CFG.SEPARATE`` families, with guidance > 1); the adapter decides."""
        from cachesearch.adapters import CFG

        separate = self.adapter.cfg is CFG.SEPARATE and self.guidance_scale > 1
        return separate or bool(self.adapter.uses_cfg(self.pipe, self.guidance_scale))

    @property
    def dtype(self) -> torch.dtype:
        """Parameter dtype of the denoiser."""
        return self.fixtures.dtype

    def describe(self) -> dict[str, Any]:
        """Model, sampler and metric this evaluator uses (for run records and profile files)."""
        return {
            "model": {
                "source": self.source,
                "class": type(self.denoiser).__name__,
                "fingerprint": self.fingerprint,
                "random_weights": self.random_weights,
            },
            "sampler": {
                "scheduler": type(self.pipe.scheduler).__name__,
                "num_inference_steps": self.num_inference_steps,
                "guidance_scale": self.guidance_scale,
                "height": self.height,
                "width": self.width,
                **({"num_frames": self.sampler.num_frames} if self.sampler.num_frames is not None else {}),
            },
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.device),
            "metric": self.metric_name,
        }

    # -- evaluation --------------------------------------------------------------------------------------
    def _check_schedule(self, schedule: Schedule) -> dict[str, Any]:
        """The pipeline kwargs of ``schedule`` (without ``guidance_scale``), once it is known to fit.

        Raises:
            TypeError: ``schedule`` is not a :class:`Schedule`.
            ScheduleError: it was made for another architecture, scheduler or guidance scale.
        """
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule: expected a cachesearch Schedule, got {type(schedule).__name__}")
        mismatch = fingerprint_mismatch(
            schedule, type(self.denoiser).__name__, self.fingerprint, where=f"this evaluator's model ({self.source})"
        )
        if mismatch is not None:
            raise ScheduleError(mismatch)
        sched_name = type(self.pipe.scheduler).__name__
        if schedule.sampler.scheduler not in (sched_name, "unknown"):
            raise ScheduleError(
                f"schedule {schedule.name!r} is for {schedule.sampler.scheduler} but the evaluator samples with "
                f"{sched_name}; set EvalConfig.scheduler={schedule.sampler.scheduler!r} (--scheduler)"
            )
        kwargs = schedule.pipeline_kwargs()
        g = kwargs.pop("guidance_scale", None)
        if g is not None and not math.isclose(g, self.guidance_scale):
            raise ScheduleError(
                f"schedule {schedule.name!r} has guidance_scale {g} but the reference uses {self.guidance_scale}; "
                f"set EvalConfig.guidance_scale={g}"
            )
        return kwargs

    def cleanup_after_failure(self) -> None:
        """Release memory a failed candidate left behind (``gc.collect`` and, on CUDA, ``empty_cache``) so that
        the next candidate starts clean."""
        gc.collect()
        if self.device.type == "cuda" and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def evaluate(
        self, schedule: Schedule, *, split: str = "train", measure: bool | None = None, images: slice | None = None
    ) -> EvalResult:
        """Run ``schedule`` on the prompts of ``split`` and score it against the reference.

        Args:
            schedule: a schedule for this evaluator's denoiser (see :meth:`compile`).
            split: ``"train"`` or ``"heldout"``.
            measure: also measure latency (default: ``config.latency == "measured"``).
            images: score only this range of the split's images (multi-fidelity screening); results of
                disjoint ranges combine with :meth:`EvalResult.merge` into the result of their union.

        Returns:
            An :class:`EvalResult`; ``valid=False`` with a reason when the candidate produced NaN/inf, ran out
            of CUDA memory or raised. Raises only for errors of the caller (wrong architecture, sampler or
            guidance), never for a failing candidate.
        """
        measure = self.config.latency == "measured" if measure is None else bool(measure)
        kwargs = self._check_schedule(schedule)
        ps = self.prompt_set(split)
        first, stop, _ = (images or slice(None)).indices(len(ps))
        if first >= stop:
            raise ValueError(f"images: empty range {images} of the {len(ps)} {split} images")
        reference = self.fixtures.reference_range(split, first, stop)
        t0 = time.perf_counter()
        common: dict[str, Any] = {
            "schedule": schedule.name,
            "split": split,
            "metric": self.metric_name,
            "n_images": stop - first,
            "prompts": ps.digest(),
            "images": None if (first, stop) == (0, len(ps)) else [first, stop],
            "random_weights": self.random_weights,
        }

        def invalid(reason: str) -> EvalResult:
            return EvalResult.invalid(reason, seconds=time.perf_counter() - t0, **common)

        runtime = schedule.runtime is not None
        if not runtime:
            try:
                common["cost_ratio"] = self.cost_ratio(schedule)
            except ScheduleError as e:
                return invalid(f"cost: {e}")

        stats = None
        stage = f"{schedule.name} ({split})"
        batches: list[tuple[int, int]] = []  # (images, first denoiser call computed) per pipeline call
        try:
            counter = self.executed_cost if runtime else None  # built before the library's hooks go on
            with schedule.applied(self.pipe) as applied:
                if runtime:
                    generated, costs = self._generate_counted(counter, split, kwargs, stage, slice(first, stop))
                    common["cost_ratio"] = sum(costs) / len(costs)
                else:
                    around = None
                    if self.prefixes.enabled and not measure and PrefixCache.shareable(schedule):
                        steps, calls = self.num_calls(kwargs)
                        around = self.prefixes.around(
                            schedule, applied, denoiser_of(self.pipe), (split, kwargs),
                            steps_of_calls(self.pipe.scheduler, steps, calls), batches,
                            images=(first, stop), batch_size=self.config.batch_size)
                    generated = self.fixtures.generate(split, kwargs, stage, slice(first, stop), around=around)
                if measure:
                    stats = self._measure(kwargs, f"latency ({schedule.name})")
        except torch.cuda.OutOfMemoryError as e:
            self.cleanup_after_failure()
            return invalid(f"CUDA out of memory: {_reason(e).removeprefix('OutOfMemoryError: ')}")
        except InvalidOutputError as e:
            return invalid(f"invalid output: {e}")
        except Exception as e:  # noqa: BLE001 - a failing candidate is a result, not a crash
            logger.debug("candidate %s failed", schedule.name, exc_info=True)
            self.cleanup_after_failure()
            return invalid(f"candidate raised {_reason(e)}")

        try:
            scores = self._score(generated, reference)
        except InvalidOutputError as e:
            return invalid(f"invalid output: {e}")

        latency: dict[str, Any] = {"latency_ms": None, "baseline_ms": None, "speedup": None, "latency_spread": None}
        if stats is not None:
            base = self.baseline_latency()
            latency = {
                "latency_ms": stats.median_ms,
                "baseline_ms": base.median_ms,
                "speedup": base.median_ms / stats.median_ms if stats.median_ms > 0 else None,
                "latency_spread": stats.relative_spread,
                "device": stats.device,
            }
        if runtime:  # what executed, counted per image
            full = self.image_macs(self.compile(Full()))
            if full is not None:
                common["macs"], common["macs_reused"] = full * common["cost_ratio"] * (stop - first), 0.0
        elif (per_call := self.call_macs(schedule)) is not None:
            batches = batches or [(stop - first, 0)]
            common["macs"] = sum(n * sum(per_call[c:]) for n, c in batches)
            common["macs_reused"] = sum(n * sum(per_call[:c]) for n, c in batches)
        return EvalResult(
            valid=True,
            reason=None,
            **scores,
            accuracy=self.accuracy(generated, split, slice(first, stop)),
            seconds=time.perf_counter() - t0,
            **common,
            **latency,
        )

    def images(self, schedule: Schedule, *, split: str = "heldout", images: slice | None = None) -> torch.Tensor:
        """The images ``schedule`` generates on the prompts of ``split`` (all, or the range ``images``), unscored:
        the same call :meth:`evaluate` makes, so image ``i`` is comparable with ``reference(split)[i]``.

        Raises:
            ScheduleError: ``schedule`` does not fit this evaluator (see :meth:`evaluate`).
            InvalidOutputError: an image contains NaN/inf.
        """
        kwargs = self._check_schedule(schedule)
        if schedule.runtime is not None:  # one image per call, as evaluate() runs it
            counter = self.executed_cost
            with schedule.applied(self.pipe):
                return self._generate_counted(counter, split, kwargs, f"{schedule.name} ({split})",
                                              images or slice(None))[0]
        with schedule.applied(self.pipe):
            return self.fixtures.generate(split, kwargs, f"{schedule.name} ({split})", images)
