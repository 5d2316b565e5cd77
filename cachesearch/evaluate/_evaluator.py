"""The evaluator: run a schedule on a prompt set from the reference's initial latents and score it.

One :class:`Evaluator` holds a loaded pipeline, its block space with per-block MACs, the perceptual metric
and the two prompt sets. References (full compute) come from the on-disk cache (:mod:`._reference`) or are
computed once. Candidates run from the identical initial latents: the latents of image ``i`` are
``torch.randn`` of one image's latent shape from a CPU generator seeded with the image's seed (what
diffusers' ``randn_tensor`` draws for a per-image CPU generator), cast to the pipeline's device and dtype,
and passed as ``latents=``; stochastic samplers get per-image CPU generators seeded ``seed + 2**32`` for
their step noise. Reference and candidates use the same batches, so an all-recompute schedule reproduces
the reference bit for bit.

Failures of a candidate (NaN/inf outputs, CUDA out-of-memory, any exception) become an invalid
:class:`EvalResult` with the reason; the schedule's hooks are always removed first.
"""

from __future__ import annotations

import copy
import gc
import inspect
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import torch

from cachesearch.schedule import (
    BlockSpace,
    Joint,
    LatencyMetrics,
    Metrics,
    Policy,
    QualityMetrics,
    Schedule,
    ScheduleError,
    StepSet,
)

from ._errors import InvalidOutputError
from ._prompts import SPLITS, PromptSet, builtin_prompts, load_prompt_file
from ._reference import REFERENCE_FORMAT, ReferenceCache, ReferenceInfo, weights_hash

if TYPE_CHECKING:
    from cachesearch.models._loaders import LoadedModel

    from ._latency import LatencyStats
    from ._quality import PerceptualMetric

__all__ = ["SCHEDULER_NAMES", "EvalConfig", "EvalConfigError", "EvalResult", "Evaluator", "make_scheduler"]

logger = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]

SCHEDULER_NAMES: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "dpmsolver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "euler": ("EulerDiscreteScheduler", {}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
    "heun": ("HeunDiscreteScheduler", {}),
}
"""Short scheduler names accepted by :class:`EvalConfig` (diffusers class names are accepted too)."""

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}
_LATENCY_MODES = ("analytic", "measured")
_STEP_NOISE_OFFSET = 1 << 32
_LATENTS_RECIPE = "cpu-randn-per-seed@1"


class EvalConfigError(ValueError):
    """An :class:`EvalConfig` field (or an evaluator argument) is invalid; the message names it and the fix."""


def _pos_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise EvalConfigError(f"EvalConfig.{name}: expected a positive integer, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """What to evaluate on and how.

    Attributes:
        model: model spec for :func:`cachesearch.models._loaders.load_model` (``"embedded"``, ``"arch:sd15"``,
            a pipeline folder, a hub id in the local cache).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        dtype: ``"float32"``, ``"float16"``, ``"bfloat16"`` or ``None`` (the loader's default).
        scheduler: ``None`` (the pipeline's own) or one of :data:`SCHEDULER_NAMES` or a diffusers class name.
        num_inference_steps: steps of the reference sampler (a step-set candidate may run fewer).
        guidance_scale: classifier-free guidance; ``None``: the model's default.
        height, width: image size in pixels; ``None``: the model's default.
        n_train, n_heldout: images in the train and held-out prompt sets.
        prompts_file: text or YAML prompt file (see :mod:`._prompts`); ``None``: built-in prompts.
        metric: preferred perceptual metric; the one actually used is recorded in every result.
        latency: ``"analytic"`` (cost ratio only; wall time of the evaluation is in ``seconds``) or
            ``"measured"`` (also time one pipeline call with and without the schedule).
        latency_repeats: timed calls per latency measurement (after ``latency_warmup`` untimed calls).
        latency_warmup: untimed calls before timing.
        latency_batch: prompts per timed pipeline call.
        batch_size: prompts per pipeline call when generating images for quality.
        cache_dir: where references are stored (``<cache_dir>/references``).
    """

    model: str = "embedded"
    device: str = "cpu"
    dtype: str | None = None
    scheduler: str | None = None
    num_inference_steps: int = 20
    guidance_scale: float | None = None
    height: int | None = None
    width: int | None = None
    n_train: int = 8
    n_heldout: int = 8
    prompts_file: str | None = None
    metric: str = "lpips-alex"
    latency: str = "analytic"
    latency_repeats: int = 3
    latency_warmup: int = 1
    latency_batch: int = 1
    batch_size: int = 8
    cache_dir: str = ".cache/cachesearch"

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise EvalConfigError(f"EvalConfig.model: expected a model spec such as 'embedded', got {self.model!r}")
        try:
            dev = torch.device(self.device)
        except (RuntimeError, TypeError) as e:
            raise EvalConfigError(f"EvalConfig.device: expected 'cpu', 'cuda' or 'cuda:N', got {self.device!r}") from e
        if dev.type not in ("cpu", "cuda"):
            raise EvalConfigError(f"EvalConfig.device: expected 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.dtype is not None and self.dtype not in _DTYPES:
            raise EvalConfigError(f"EvalConfig.dtype: expected one of {sorted(_DTYPES)} or None, got {self.dtype!r}")
        if self.scheduler is not None:
            _scheduler_class(self.scheduler)
        for name in ("num_inference_steps", "n_train", "n_heldout", "latency_repeats", "latency_batch", "batch_size"):
            _pos_int(name, getattr(self, name))
        if isinstance(self.latency_warmup, bool) or not isinstance(self.latency_warmup, int) or self.latency_warmup < 0:
            raise EvalConfigError(f"EvalConfig.latency_warmup: expected an integer >= 0, got {self.latency_warmup!r}")
        if self.guidance_scale is not None:
            g = self.guidance_scale
            if isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g) or g < 0:
                raise EvalConfigError(f"EvalConfig.guidance_scale: expected a number >= 0 or None, got {g!r}")
            object.__setattr__(self, "guidance_scale", float(g))
        for name in ("height", "width"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 8):
                raise EvalConfigError(f"EvalConfig.{name}: expected an image size in pixels (>= 8) or None, got {v!r}")
        if self.latency not in _LATENCY_MODES:
            raise EvalConfigError(f"EvalConfig.latency: expected one of {list(_LATENCY_MODES)}, got {self.latency!r}")
        if not isinstance(self.metric, str) or not self.metric:
            raise EvalConfigError(f"EvalConfig.metric: expected a metric name ('lpips-alex'), got {self.metric!r}")
        if not isinstance(self.cache_dir, str) or not self.cache_dir:
            raise EvalConfigError(f"EvalConfig.cache_dir: expected a folder path, got {self.cache_dir!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-value form (for run records)."""
        return asdict(self)


def _scheduler_class(name: str) -> tuple[type, dict[str, Any]]:
    import diffusers

    if name in SCHEDULER_NAMES:
        cls_name, extra = SCHEDULER_NAMES[name]
    elif isinstance(name, str) and name.endswith("Scheduler") and hasattr(diffusers, name):
        cls_name, extra = name, {}
    else:
        raise EvalConfigError(
            f"EvalConfig.scheduler: expected one of {sorted(SCHEDULER_NAMES)}, a diffusers scheduler class name "
            f"(e.g. 'DDIMScheduler') or None, got {name!r}"
        )
    return getattr(diffusers, cls_name), dict(extra)


def make_scheduler(name: str, base: Any) -> Any:
    """A scheduler called ``name`` built from the config of scheduler ``base`` (``base`` itself if it already
    is one and no option differs)."""
    cls, extra = _scheduler_class(name)
    if type(base) is cls and all(base.config.get(k) == v for k, v in extra.items()):
        return base
    return cls.from_config(base.config, **extra)


@dataclass(frozen=True, kw_only=True)
class EvalResult:
    """Scores of one schedule on one prompt split.

    Attributes:
        schedule: schedule name.
        split: ``"train"`` or ``"heldout"``.
        valid: ``False`` when the candidate failed; ``reason`` says why and the scores are ``None``.
        metric: name of the perceptual metric actually used (values under different names do not compare).
        quality: mean perceptual distance to the reference (lower is better; 0 = identical).
        psnr: mean PSNR in dB (``inf`` when every image equals its reference).
        ssim: mean SSIM.
        accuracy: embedded model only: fraction of images whose background color, shape color and shape
            match the prompt.
        cost_ratio: analytic denoiser MACs relative to the reference sampler's full compute (a k-of-N step
            set counts k/N).
        latency_ms, baseline_ms: median latency of one pipeline call with and without the schedule, both
            measured in this process (``None`` unless latency was measured).
        speedup: ``baseline_ms / latency_ms``.
        latency_spread: interquartile range / median of the candidate's latency samples.
        n_images: images scored.
        seconds: wall time of this evaluation.
        device: description of the device latency was measured on.
        prompts: digest of the prompt set.
        random_weights: the model has random weights; quality numbers describe nothing real.
    """

    schedule: str
    split: str
    valid: bool
    reason: str | None
    metric: str
    quality: float | None
    psnr: float | None
    ssim: float | None
    accuracy: float | None
    cost_ratio: float | None
    latency_ms: float | None
    baseline_ms: float | None
    speedup: float | None
    latency_spread: float | None
    n_images: int
    seconds: float
    device: str | None = None
    prompts: str | None = None
    random_weights: bool = False

    def to_dict(self, *, json_safe: bool = False) -> dict[str, Any]:
        """Plain-value dict. ``psnr`` may be ``inf``; with ``json_safe`` non-finite floats become the strings
        ``"inf"``/``"-inf"``/``"nan"`` so that strict JSON readers accept the output."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if json_safe:
            out = {k: repr(v) if isinstance(v, float) and not math.isfinite(v) else v for k, v in out.items()}
        return out


def _device_kind(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


class Evaluator:
    """Evaluate caching schedules of one model and sampler against cached full-compute references.

    Args:
        config: what to evaluate on (see :class:`EvalConfig`).
        progress: optional callback ``progress(stage, done, total)`` called as images are generated.
        model: an already loaded model (``LoadedModel``) on ``config.device``; ``config.model`` and
            ``config.dtype`` are then not used for loading. Default: ``load_model(config.model, ...)``.

    Attributes:
        config, pipe, denoiser: the configuration, pipeline and denoiser.
        source: normalised model source (``"embedded:shapes"``).
        space: the block space with per-block MACs.
        fingerprint: architecture fingerprint of the denoiser.
        metric_name: perceptual metric actually used.
        random_weights: ``True`` for random-weight models (quality numbers describe nothing real).
        num_inference_steps, guidance_scale, height, width: the resolved reference sampler.
    """

    def __init__(
        self, config: EvalConfig, *, progress: ProgressFn | None = None, model: LoadedModel | None = None
    ) -> None:
        if not isinstance(config, EvalConfig):
            raise TypeError(f"config: expected an EvalConfig, got {type(config).__name__}")
        from cachesearch.models import block_space
        from cachesearch.runtime import fingerprint_module

        from ._quality import get_perceptual_metric

        self.config = config
        self._progress = progress
        self.device = torch.device(config.device)
        if model is None:
            from cachesearch.models._loaders import load_model

            self._report("load model", 0, 1)
            model = load_model(config.model, device=self.device, dtype=_DTYPES.get(config.dtype or ""))
            self._report("load model", 1, 1)
        on = next(model.denoiser.parameters()).device
        if on.type != self.device.type:
            raise EvalConfigError(
                f"EvalConfig.device: {config.device!r}, but the given model is on {on}; move it (pipe.to(...)) or "
                f"set device={on.type!r}"
            )
        self.model = model
        self.pipe = model.pipe
        self.denoiser = model.denoiser
        self.source: str = model.source
        self.random_weights: bool = bool(model.random_weights)
        if config.scheduler is not None:
            self.pipe.scheduler = make_scheduler(config.scheduler, self.pipe.scheduler)
        self.pipe.set_progress_bar_config(disable=True)
        self.space: BlockSpace = block_space(self.denoiser, with_costs=True)
        self.fingerprint: str = fingerprint_module(self.denoiser)
        self.metric: PerceptualMetric = get_perceptual_metric(config.metric, device=self.device)
        self.metric_name: str = self.metric.name
        self.num_inference_steps: int = config.num_inference_steps
        g = config.guidance_scale
        self.guidance_scale: float = self._default_guidance() if g is None else g
        self.height, self.width = self._default_size()
        self._cache = ReferenceCache(config.cache_dir)
        self._prompt_sets: dict[str, PromptSet] = {}
        self._latents: dict[str, torch.Tensor] = {}
        self._refs: dict[str, torch.Tensor] = {}
        self._ref_info: dict[str, ReferenceInfo] = {}
        self._baseline: LatencyStats | None = None
        self._weights_hash: str | None = None
        self._calls_cache: dict[tuple, int] = {}

    # -- resolved settings ------------------------------------------------------------------------------
    def _report(self, stage: str, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress(stage, done, total)

    def _default_guidance(self) -> float:
        if self.source.startswith("embedded:"):
            from cachesearch.models.shapes import DEFAULT_GUIDANCE_SCALE

            return float(DEFAULT_GUIDANCE_SCALE)
        param = inspect.signature(type(self.pipe).__call__).parameters.get("guidance_scale")
        if param is None or not isinstance(param.default, (int, float)):
            return 7.5
        return float(param.default)

    def _default_size(self) -> tuple[int, int]:
        factor = int(getattr(self.pipe, "vae_scale_factor", 8))
        sample = getattr(self.pipe, "default_sample_size", None) or self.denoiser.config.sample_size
        h, w = (sample, sample) if isinstance(sample, int) else (int(sample[0]), int(sample[1]))
        height = self.config.height or h * factor
        width = self.config.width or w * factor
        for name, v in (("height", height), ("width", width)):
            if v % factor:
                raise EvalConfigError(f"EvalConfig.{name}: {v} px is not a multiple of the VAE factor {factor}")
        return height, width

    @property
    def cfg(self) -> bool:
        """Whether denoiser calls carry a classifier-free-guidance batch (uncond + cond)."""
        return self.guidance_scale > 1 and getattr(self.denoiser.config, "time_cond_proj_dim", None) is None

    @property
    def dtype(self) -> torch.dtype:
        """Parameter dtype of the denoiser."""
        return next(self.denoiser.parameters()).dtype

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
            },
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.device),
            "metric": self.metric_name,
        }

    # -- prompts and latents ----------------------------------------------------------------------------
    def prompt_set(self, split: str) -> PromptSet:
        """The prompts and seeds of ``split`` (``"train"`` or ``"heldout"``)."""
        if split not in SPLITS:
            raise EvalConfigError(f"split: expected one of {list(SPLITS)}, got {split!r}")
        if split not in self._prompt_sets:
            n = self.config.n_train if split == "train" else self.config.n_heldout
            if self.config.prompts_file is not None:
                ps = load_prompt_file(self.config.prompts_file, split=split, n=n)
            else:
                ps = builtin_prompts(self.source, split, n)
            self._prompt_sets[split] = ps
        return self._prompt_sets[split]

    def _latent_shape(self) -> tuple[int, int, int]:
        factor = int(getattr(self.pipe, "vae_scale_factor", 8))
        return int(self.denoiser.config.in_channels), self.height // factor, self.width // factor

    def latents(self, split: str) -> torch.Tensor:
        """Initial latents [N, C, h, w] (float32, CPU) of ``split``; image ``i`` depends only on its seed."""
        if split not in self._latents:
            shape = self._latent_shape()
            seeds = self.prompt_set(split).seeds
            self._latents[split] = torch.cat(
                [torch.randn((1, *shape), generator=torch.Generator("cpu").manual_seed(s)) for s in seeds]
            )
        return self._latents[split]

    # -- generation -------------------------------------------------------------------------------------
    def _call(
        self, prompts: list[str], latents: torch.Tensor, seeds: list[int], kwargs: Mapping[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One pipeline call; returns (images float32 CPU, final latents)."""
        holder: dict[str, torch.Tensor] = {}

        def on_step_end(pipe: Any, i: int, t: Any, cb_kwargs: dict[str, Any]) -> dict[str, Any]:
            holder["latents"] = cb_kwargs["latents"]
            return cb_kwargs

        out = self.pipe(
            prompt=prompts,
            latents=latents.to(self.device, self.dtype),
            generator=[torch.Generator("cpu").manual_seed(s + _STEP_NOISE_OFFSET) for s in seeds],
            height=self.height,
            width=self.width,
            guidance_scale=self.guidance_scale,
            output_type="pt",
            callback_on_step_end=on_step_end,
            **kwargs,
        )
        return out.images.detach().to("cpu", torch.float32), holder.get("latents")

    def _generate(self, split: str, kwargs: Mapping[str, Any], stage: str) -> torch.Tensor:
        """Images of every prompt of ``split`` in batches; raises InvalidOutputError on NaN/inf."""
        ps = self.prompt_set(split)
        latents = self.latents(split)
        n, bs = len(ps), self.config.batch_size
        images = []
        self._report(stage, 0, n)
        for lo in range(0, n, bs):
            hi = min(lo + bs, n)
            imgs, final = self._call(list(ps.prompts[lo:hi]), latents[lo:hi], list(ps.seeds[lo:hi]), kwargs)
            bad = ~torch.isfinite(imgs).flatten(1).all(dim=1)
            if final is not None:
                bad |= ~torch.isfinite(final.detach().float()).flatten(1).all(dim=1).cpu()
            if bool(bad.any()):
                batches = -(-n // bs)
                raise InvalidOutputError(int(bad.sum()), hi - lo, f"images in batch {lo // bs + 1} of {batches}")
            images.append(imgs)
            self._report(stage, hi, n)
        return torch.cat(images)

    # -- reference ---------------------------------------------------------------------------------------
    def weights_id(self) -> str:
        """Hash of the pipeline's weights (computed once per evaluator)."""
        if self._weights_hash is None:
            self._weights_hash = weights_hash(self.pipe)
        return self._weights_hash

    def reference_key(self, split: str) -> dict[str, Any]:
        """Everything the reference images of ``split`` depend on."""
        import diffusers

        sched = self.pipe.scheduler
        ps = self.prompt_set(split)
        return {
            "format": REFERENCE_FORMAT,
            "fingerprint": self.fingerprint,
            "weights": self.weights_id(),
            "pipeline": type(self.pipe).__name__,
            "scheduler": {"class": type(sched).__name__, "config": dict(sched.config)},
            "num_inference_steps": self.num_inference_steps,
            "guidance_scale": self.guidance_scale,
            "height": self.height,
            "width": self.width,
            "prompts": ps.digest(),
            "n_images": len(ps),
            "batch_size": self.config.batch_size,
            "latents": _LATENTS_RECIPE,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": _device_kind(self.device),
            "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__},
        }

    def _check_no_schedule(self) -> None:
        if getattr(self.denoiser, "_cachesearch_applied", None) is not None:
            raise ScheduleError(
                "a schedule is applied to the evaluator's pipeline; remove() it before computing references or "
                "baselines (they must be full compute)"
            )

    def _build_reference(self, split: str) -> torch.Tensor:
        self._check_no_schedule()
        try:
            return self._generate(split, {"num_inference_steps": self.num_inference_steps}, f"reference ({split})")
        except InvalidOutputError as e:
            raise RuntimeError(
                f"the full-compute reference of {self.source} produced NaN/inf ({e}); the model does not run "
                f"correctly in {self.dtype} on {self.device} (try EvalConfig.dtype='float32')"
            ) from e

    def reference(self, split: str) -> torch.Tensor:
        """Full-compute images [N, 3, H, W] in [0, 1] (float32, CPU) of ``split``, from disk when cached."""
        if split not in self._refs:
            key = self.reference_key(split)
            images, info = self._cache.get_or_build(key, lambda: self._build_reference(split))
            self._refs[split] = images
            self._ref_info[split] = info
        return self._refs[split]

    def reference_info(self, split: str) -> ReferenceInfo:
        """Where the reference of ``split`` came from (file, cache hit or rebuilt); computes it if needed."""
        self.reference(split)
        return self._ref_info[split]

    # -- compile and cost --------------------------------------------------------------------------------
    def compile(self, policy: Policy, *, name: str | None = None) -> Schedule:
        """Compile ``policy`` for this evaluator's pipeline, steps and guidance."""
        from cachesearch._compile import compile_schedule

        carries_steps = isinstance(policy, (StepSet, Joint))
        return compile_schedule(
            self.pipe,
            policy,
            num_inference_steps=None if carries_steps else self.num_inference_steps,
            guidance_scale=self.guidance_scale,
            name=name,
            source=self.source,
            space=self.space,
        )

    def _num_calls(self, kwargs: Mapping[str, Any]) -> tuple[int, int]:
        """(steps, denoiser calls) the pipeline's scheduler makes for these pipeline kwargs."""
        key = (kwargs.get("num_inference_steps"), tuple(kwargs.get("timesteps") or ()))
        if key not in self._calls_cache:
            sched = copy.deepcopy(self.pipe.scheduler)
            if kwargs.get("timesteps") is not None:
                sched.set_timesteps(timesteps=list(kwargs["timesteps"]), device="cpu")
            else:
                sched.set_timesteps(int(kwargs["num_inference_steps"]), device="cpu")
            self._calls_cache[key] = len(sched.timesteps)
        steps = len(kwargs["timesteps"]) if kwargs.get("timesteps") is not None else int(kwargs["num_inference_steps"])
        return steps, self._calls_cache[key]

    def cost_ratio(self, schedule: Schedule) -> float | None:
        """Analytic denoiser MACs of ``schedule`` relative to the reference sampler's full compute.

        Every denoiser call of the candidate costs the MACs of the blocks its step recomputes (averaged over
        the CFG branches when guidance is on); the sum is divided by the reference's calls at full cost.
        ``None`` when the block space has no MACs.
        """
        from cachesearch.runtime import steps_of_calls

        _, ref_calls = self._num_calls({"num_inference_steps": self.num_inference_steps})
        kwargs = schedule.pipeline_kwargs()
        steps, calls = self._num_calls(kwargs)
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

    # -- latency -----------------------------------------------------------------------------------------
    def _latency_fn(self, kwargs: Mapping[str, Any]) -> Callable[[], object]:
        ps = self.prompt_set("train")
        k = min(self.config.latency_batch, len(ps))
        prompts = list(ps.prompts[:k])
        latents = self.latents("train")[:k].to(self.device, self.dtype)
        size = {"height": self.height, "width": self.width, "guidance_scale": self.guidance_scale}

        def run() -> object:
            return self.pipe(prompt=prompts, latents=latents, output_type="pt", **size, **kwargs)

        return run

    def _measure(self, kwargs: Mapping[str, Any], stage: str) -> LatencyStats:
        from ._latency import remeasure_if_noisy

        self._report(stage, 0, 1)
        stats = remeasure_if_noisy(
            self._latency_fn(kwargs),
            warmup=self.config.latency_warmup,
            repeats=self.config.latency_repeats,
            device=self.device,
            max_remeasures=1,
        )
        self._report(stage, 1, 1)
        return stats

    def baseline_latency(self) -> LatencyStats:
        """Latency of one full-compute pipeline call, measured once in this process and kept."""
        if self._baseline is None:
            self._check_no_schedule()
            self._baseline = self._measure({"num_inference_steps": self.num_inference_steps}, "latency (full)")
        return self._baseline

    # -- evaluation --------------------------------------------------------------------------------------
    def _check_schedule(self, schedule: Schedule) -> dict[str, Any]:
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule: expected a cachesearch Schedule, got {type(schedule).__name__}")
        if schedule.model.fingerprint != self.fingerprint:
            raise ScheduleError(
                f"schedule {schedule.name!r} was made for another architecture (fingerprint "
                f"{schedule.model.fingerprint[:19]}…, source {schedule.model.source}); this evaluator's "
                f"{type(self.denoiser).__name__} ({self.source}) has {self.fingerprint[:19]}…"
            )
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

    def _cleanup_after_failure(self) -> None:
        gc.collect()
        if self.device.type == "cuda" and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def evaluate(self, schedule: Schedule, *, split: str = "train", measure: bool | None = None) -> EvalResult:
        """Run ``schedule`` on the prompts of ``split`` and score it against the reference.

        Args:
            schedule: a schedule for this evaluator's denoiser (see :meth:`compile`).
            split: ``"train"`` or ``"heldout"``.
            measure: also measure latency (default: ``config.latency == "measured"``).

        Returns:
            An :class:`EvalResult`; ``valid=False`` with a reason when the candidate produced NaN/inf, ran out
            of CUDA memory or raised. Raises only for errors of the caller (wrong architecture, sampler or
            guidance), never for a failing candidate.
        """
        measure = self.config.latency == "measured" if measure is None else bool(measure)
        kwargs = self._check_schedule(schedule)
        ps = self.prompt_set(split)
        reference = self.reference(split)
        t0 = time.perf_counter()
        common: dict[str, Any] = {
            "schedule": schedule.name,
            "split": split,
            "metric": self.metric_name,
            "n_images": len(ps),
            "prompts": ps.digest(),
            "random_weights": self.random_weights,
        }
        try:
            cost = self.cost_ratio(schedule)
        except ScheduleError as e:
            return self._invalid(common, f"cost: {e}", t0)
        common["cost_ratio"] = cost

        stats = None
        try:
            with schedule.applied(self.pipe):
                images = self._generate(split, kwargs, f"{schedule.name} ({split})")
                if measure:
                    stats = self._measure(kwargs, f"latency ({schedule.name})")
        except torch.cuda.OutOfMemoryError as e:
            self._cleanup_after_failure()
            return self._invalid(common, f"CUDA out of memory: {_reason(e).removeprefix('OutOfMemoryError: ')}", t0)
        except InvalidOutputError as e:
            return self._invalid(common, f"invalid output: {e}", t0)
        except Exception as e:  # noqa: BLE001 - a failing candidate is a result, not a crash
            logger.debug("candidate %s failed", schedule.name, exc_info=True)
            self._cleanup_after_failure()
            return self._invalid(common, f"candidate raised {_reason(e)}", t0)

        from ._quality import psnr, ssim

        try:
            dist = self.metric(images, reference).double()
        except InvalidOutputError as e:
            return self._invalid(common, f"invalid output: {e}", t0)
        quality = float(dist.mean())
        psnr_v = float(psnr(images, reference).mean())
        ssim_v = float(ssim(images, reference).mean()) if min(images.shape[-2:]) >= 11 else None

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
        return EvalResult(
            valid=True,
            reason=None,
            quality=quality,
            psnr=psnr_v,
            ssim=ssim_v,
            accuracy=self.accuracy(images, split),
            seconds=time.perf_counter() - t0,
            **common,
            **latency,
        )

    def _invalid(self, common: Mapping[str, Any], reason: str, t0: float) -> EvalResult:
        common = dict(common)
        common.setdefault("cost_ratio", None)
        return EvalResult(
            valid=False,
            reason=reason,
            quality=None,
            psnr=None,
            ssim=None,
            accuracy=None,
            latency_ms=None,
            baseline_ms=None,
            speedup=None,
            latency_spread=None,
            seconds=time.perf_counter() - t0,
            **common,
        )

    def accuracy(self, images: torch.Tensor, split: str) -> float | None:
        """Embedded model: fraction of images matching their caption's colors and shape; else ``None``."""
        if not self.source.startswith("embedded:"):
            return None
        from cachesearch.models.shapes import check, parse_caption

        ps = self.prompt_set(split)
        try:
            captions = [parse_caption(p) for p in ps.prompts]
        except ValueError:
            return None  # a user prompt file with free text: no ground truth
        ok = [check(img, cap).all_ok for img, cap in zip(images, captions)]
        return sum(ok) / len(ok)

    # -- export ------------------------------------------------------------------------------------------
    def to_schedule_metrics(self, train: EvalResult, heldout: EvalResult | None = None) -> Metrics:
        """Metrics for a schedule file from a train result and, optionally, a held-out result."""
        if not train.valid or train.quality is None:
            raise ValueError(f"to_schedule_metrics: the train result of {train.schedule!r} is invalid ({train.reason})")
        if heldout is not None and (not heldout.valid or heldout.quality is None):
            raise ValueError(
                f"to_schedule_metrics: the held-out result of {heldout.schedule!r} is invalid ({heldout.reason})"
            )
        if heldout is not None and heldout.metric != train.metric:
            raise ValueError(f"to_schedule_metrics: train used {train.metric}, held-out {heldout.metric}")
        quality = QualityMetrics(
            metric=train.metric,
            train=train.quality,
            heldout=None if heldout is None else heldout.quality,
            n_images=train.n_images + (0 if heldout is None else heldout.n_images),
            psnr=train.psnr,
            ssim=train.ssim,
            accuracy=train.accuracy,
        )
        timed = train if train.latency_ms is not None else heldout
        latency = LatencyMetrics(
            device=timed.device if timed is not None and timed.latency_ms is not None else None,
            ms=None if timed is None else timed.latency_ms,
            baseline_ms=None if timed is None else timed.baseline_ms,
            speedup=None if timed is None else timed.speedup,
            cost_ratio=train.cost_ratio,
        )
        return Metrics(quality=quality, latency=latency)
