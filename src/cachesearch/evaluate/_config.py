"""What an evaluation runs on: :class:`EvalConfig`, its validation, and the scheduler and dtype it names.

Plain values only; nothing here loads a model. The evaluator (:mod:`._evaluator`) resolves the defaults that
depend on the loaded pipeline (guidance, image size) into a :class:`~._fixtures.ReferenceSampler`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from .._util import default_cache_dir

__all__ = [
    "DTYPES",
    "LATENCY_MODES",
    "SCHEDULER_NAMES",
    "EvalConfig",
    "EvalConfigError",
    "make_scheduler",
    "scheduler_class",
]

SCHEDULER_NAMES: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "dpmsolver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "euler": ("EulerDiscreteScheduler", {}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
    "heun": ("HeunDiscreteScheduler", {}),
}
"""Short scheduler names accepted by :class:`EvalConfig` (diffusers class names are accepted too)."""

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}
"""Names accepted by :attr:`EvalConfig.dtype`."""

LATENCY_MODES = ("analytic", "measured")
"""Values of :attr:`EvalConfig.latency`."""


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
        num_frames: frames per clip of a video model; ``None``: the model's default (image models: leave unset).
        n_train, n_heldout: images in the train and held-out prompt sets.
        prompts_file: text or YAML prompt file (see :mod:`._prompts`); ``None``: built-in prompts.
        metric: preferred perceptual metric; the one actually used is recorded in every result.
        latency: ``"analytic"`` (cost ratio only; wall time of the evaluation is in ``seconds``) or
            ``"measured"`` (also time one pipeline call with and without the schedule).
        latency_repeats: timed calls per latency measurement (after ``latency_warmup`` untimed calls).
        latency_warmup: untimed calls before timing.
        latency_batch: prompts per timed pipeline call.
        batch_size: prompts per pipeline call when generating images for quality.
        cache_dir: where references are stored (``<cache_dir>/references``); default
            :func:`~cachesearch._util.default_cache_dir` (``$CACHESEARCH_CACHE_DIR``, ``$XDG_CACHE_HOME/cachesearch``
            or ``~/.cache/cachesearch``).
        prefix_cache_mb: memory for exact prefix sharing (:mod:`._prefix`): candidates whose masks agree with an
            earlier candidate's on their first steps resume from its state after them; 0 turns it off.
    """

    model: str = "embedded"
    device: str = "cpu"
    dtype: str | None = None
    scheduler: str | None = None
    num_inference_steps: int = 20
    guidance_scale: float | None = None
    height: int | None = None
    width: int | None = None
    num_frames: int | None = None
    n_train: int = 8
    n_heldout: int = 8
    prompts_file: str | None = None
    metric: str = "lpips-alex"
    latency: str = "analytic"
    latency_repeats: int = 3
    latency_warmup: int = 1
    latency_batch: int = 1
    batch_size: int = 8
    cache_dir: str = field(default_factory=default_cache_dir)
    prefix_cache_mb: int = 512

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise EvalConfigError(f"EvalConfig.model: expected a model spec such as 'embedded', got {self.model!r}")
        try:
            dev = torch.device(self.device)
        except (RuntimeError, TypeError) as e:
            raise EvalConfigError(f"EvalConfig.device: expected 'cpu', 'cuda' or 'cuda:N', got {self.device!r}") from e
        if dev.type not in ("cpu", "cuda"):
            raise EvalConfigError(f"EvalConfig.device: expected 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise EvalConfigError(f"EvalConfig.dtype: expected one of {sorted(DTYPES)} or None, got {self.dtype!r}")
        if self.scheduler is not None:
            scheduler_class(self.scheduler)
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
        v = self.num_frames
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise EvalConfigError(f"EvalConfig.num_frames: expected a number of frames (>= 1) or None, got {v!r}")
        if self.latency not in LATENCY_MODES:
            raise EvalConfigError(f"EvalConfig.latency: expected one of {list(LATENCY_MODES)}, got {self.latency!r}")
        if not isinstance(self.metric, str) or not self.metric:
            raise EvalConfigError(f"EvalConfig.metric: expected a metric name ('lpips-alex'), got {self.metric!r}")
        mb = self.prefix_cache_mb
        if isinstance(mb, bool) or not isinstance(mb, int) or mb < 0:
            raise EvalConfigError(f"EvalConfig.prefix_cache_mb: expected an integer >= 0 (0: no prefix sharing), got "
                                  f"{mb!r}")
        if not isinstance(self.cache_dir, str) or not self.cache_dir:
            raise EvalConfigError(f"EvalConfig.cache_dir: expected a folder path, got {self.cache_dir!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-value form (for run records)."""
        return asdict(self)

    @property
    def torch_dtype(self) -> torch.dtype | None:
        """:attr:`dtype` as a ``torch.dtype`` (``None``: the loader's default)."""
        return None if self.dtype is None else DTYPES[self.dtype]


def scheduler_class(name: str) -> tuple[type, dict[str, Any]]:
    """The diffusers scheduler class called ``name`` (a :data:`SCHEDULER_NAMES` key or a class name) and the
    config options that name implies.

    Raises:
        EvalConfigError: ``name`` is neither.
    """
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
    cls, extra = scheduler_class(name)
    if type(base) is cls and all(base.config.get(k) == v for k, v in extra.items()):
        return base
    return cls.from_config(base.config, **extra)
