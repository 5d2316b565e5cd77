"""Evaluation engine: prompt sets, reference cache, quality, latency, block-change profiler and baselines.

Modules, one job each: ``_config`` (:class:`EvalConfig`, scheduler choice), ``_result`` (:class:`EvalResult`),
``_fixtures`` (prompt sets, initial latents, references), ``_evaluator`` (:class:`Evaluator`: evaluate; its bases
``_evaluator_views`` (fixtures, compile, cost), ``_evaluator_latency``, ``_evaluator_runtime`` (runtime schedules,
counted) and ``_evaluator_scoring``), ``_quality`` (metric choice; the metrics in ``_perceptual``, PSNR and SSIM in
``_pixel``), ``_latency``, ``_profile``, ``_baselines``, ``_prompts``, ``_reference``, ``_frechet`` (Fréchet
distance in the shipped perceptual network's feature space).

Typical use::

    from cachesearch.evaluate import EvalConfig, Evaluator
    ev = Evaluator(EvalConfig(model="embedded", num_inference_steps=20))
    sched = ev.compile(cs.DeepCache(interval=3, branch=0))
    train = ev.evaluate(sched, split="train", measure=True)
    heldout = ev.evaluate(sched, split="heldout")

Names resolve lazily: importing this package loads none of its modules (nor lpips, scikit-image or
matplotlib) until a name is used. Never imports optuna or ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cachesearch._util import lazy_exports

_EXPORTS: dict[str, str] = {
    # prompts
    "PromptSet": "._prompts",
    "PromptFileError": "._prompts",
    "builtin_prompts": "._prompts",
    "load_prompt_file": "._prompts",
    # configuration, results, evaluator
    "EvalConfig": "._config",
    "EvalConfigError": "._config",
    "SCHEDULER_NAMES": "._config",
    "EvalResult": "._result",
    "Evaluator": "._evaluator",
    # reference cache
    "ReferenceCache": "._reference",
    "ReferenceInfo": "._reference",
    # profiler
    "profile_blocks": "._profile",
    "profile_images": "._profile",
    "save_profile": "._profile",
    "load_profile": "._profile",
    "profile_id": "._profile",
    # scale-shift fitting
    "FitMethod": "._scale_shift",
    "fit_scale_shift": "._scale_shift",
    # distribution-level score (an FID analogue in the shipped perceptual network's feature space)
    "FEATURE_SPACE": "._frechet",
    "frechet_distance": "._frechet",
    "perceptual_features": "._frechet",
    # runtime caches: MagCache's own calibration
    "MagCacheCalibration": "._calibrate",
    "magcache_ratios": "._calibrate",
    # baselines
    "Baseline": "._baselines",
    "baselines": "._baselines",
    # quality
    "PerceptualMetric": "._perceptual",
    "get_perceptual_metric": "._quality",
    "psnr": "._pixel",
    "ssim": "._pixel",
    "quality_report": "._quality",
    # latency
    "LatencyStats": "._latency",
    "measure_latency": "._latency",
    "remeasure_if_noisy": "._latency",
    "peak_memory": "._latency",
    "device_description": "cachesearch._util",
    # errors
    "InvalidOutputError": "._errors",
    "PerceptualMetricUnavailableError": "._errors",
}

__all__ = [
    "FEATURE_SPACE",
    "SCHEDULER_NAMES",
    "EvalConfig",
    "EvalConfigError",
    "EvalResult",
    "Evaluator",
    "FitMethod",
    "InvalidOutputError",
    "LatencyStats",
    "MagCacheCalibration",
    "PerceptualMetric",
    "PerceptualMetricUnavailableError",
    "PromptFileError",
    "PromptSet",
    "ReferenceCache",
    "ReferenceInfo",
    "Baseline",
    "baselines",
    "builtin_prompts",
    "device_description",
    "fit_scale_shift",
    "frechet_distance",
    "get_perceptual_metric",
    "load_profile",
    "load_prompt_file",
    "magcache_ratios",
    "measure_latency",
    "peak_memory",
    "perceptual_features",
    "profile_blocks",
    "profile_id",
    "profile_images",
    "psnr",
    "quality_report",
    "remeasure_if_noisy",
    "save_profile",
    "ssim",
]

if TYPE_CHECKING:
    from cachesearch._util import device_description

    from ._baselines import Baseline, baselines
    from ._calibrate import MagCacheCalibration, magcache_ratios
    from ._config import SCHEDULER_NAMES, EvalConfig, EvalConfigError
    from ._errors import InvalidOutputError, PerceptualMetricUnavailableError
    from ._evaluator import Evaluator
    from ._frechet import FEATURE_SPACE, frechet_distance, perceptual_features
    from ._latency import LatencyStats, measure_latency, peak_memory, remeasure_if_noisy
    from ._perceptual import PerceptualMetric
    from ._pixel import psnr, ssim
    from ._profile import load_profile, profile_blocks, profile_id, profile_images, save_profile
    from ._prompts import PromptFileError, PromptSet, builtin_prompts, load_prompt_file
    from ._quality import get_perceptual_metric, quality_report
    from ._reference import ReferenceCache, ReferenceInfo
    from ._result import EvalResult
    from ._scale_shift import FitMethod, fit_scale_shift


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
