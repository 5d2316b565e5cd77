"""Resolve a model spec to a diffusers pipeline: embedded model, ``arch:`` preset, folder or hub id.

Spec forms (normalised form in :attr:`LoadedModel.source`):

==========================  ===========================  ==================================================
spec                        source                       what is loaded
==========================  ===========================  ==================================================
``embedded``                ``embedded:shapes``          the shipped ``shapes`` model (trained weights)
``embedded:shapes``         ``embedded:shapes``          same
``embedded:scenes``         ``embedded:scenes``          the shipped 64 px ``scenes`` model (trained weights)
``arch:sd15``/``arch:sdxl`` ``arch:sd15``/``arch:sdxl``  real architecture, **random weights** (latency only)
``arch:wan2.1-tiny``        ``arch:wan2.1-tiny``         a tiny Wan text-to-video pipeline, random weights (CI,
                                                         trying a video run; ``arch:wan2.2-a14b-tiny``: 2 experts)
``arch:wan2.1-1.3b``, ...   (refused)                    denoiser-only presets (costs: ``cachesearch blocks``)
``/abs``, ``./rel``, ``~/x`` ``path:/abs``               a diffusers pipeline folder (``model_index.json``)
``path:<folder>``           ``path:/abs``                same, explicitly
``org/name``                ``hub:org/name``             a hub id, **from the local HF cache only**
``hub:org/name``            ``hub:org/name``             same, explicitly
==========================  ===========================  ==================================================

Nothing is ever downloaded: folders and hub ids are loaded with ``local_files_only=True``; a hub id that is
not in the local cache raises :class:`ModelLoadError` at once, with instructions.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import DiffusionPipeline

from cachesearch._quiet import low_cpu_mem_usage, quiet_loading
from cachesearch.embedded import DEFAULT_EMBEDDED, EMBEDDED_PACKAGES, embedded_package
from cachesearch.models._errors import ModelLoadError
from cachesearch.models._presets import ARCH_PRESETS, build_arch_pipeline

__all__ = ["EMBEDDED_MODELS", "LoadedModel", "load_model", "normalize_spec"]

EMBEDDED_MODELS: tuple[str, ...] = tuple(EMBEDDED_PACKAGES)
"""Names accepted after ``embedded:``."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


def _valid_forms() -> str:
    presets = ", ".join(f"'arch:{n}'" for n in ARCH_PRESETS)
    embedded = ", ".join(f"'embedded:{n}'" for n in EMBEDDED_MODELS)
    return (
        f"'embedded', {embedded}, {presets}, a diffusers pipeline folder (absolute, './relative' or "
        f"'path:<folder>'), or a hub id in the local Hugging Face cache ('org/name' or 'hub:org/name')"
    )


@dataclass(frozen=True)
class LoadedModel:
    """A loaded pipeline and what cachesearch needs to know about it.

    Attributes:
        pipe: The diffusers pipeline.
        denoiser: Its denoiser (the pipeline attribute its adapter names: ``pipe.unet``).
        source: Normalised spec: ``embedded:shapes``, ``arch:sd15``, ``path:/abs/folder``, ``hub:org/name``.
        random_weights: ``True`` for ``arch:`` presets (and any pipeline flagged
            ``_cachesearch_random_weights``): never report quality numbers for it.
        family: Adapter family of the denoiser (``"unet2d"``).
    """

    pipe: DiffusionPipeline
    denoiser: torch.nn.Module
    source: str
    random_weights: bool
    family: str


def normalize_spec(spec: str) -> tuple[str, str]:
    """Split ``spec`` into ``(kind, value)`` with kind in ``embedded``/``arch``/``path``/``hub``.

    Paths are made absolute (``~`` expanded) but not checked for existence here.

    Raises:
        ModelLoadError: unknown ``embedded:``/``arch:`` name or a spec that is neither a path nor a hub id.
    """
    if not isinstance(spec, str):
        raise ModelLoadError(f"model spec must be a str, got {type(spec).__name__}; valid: {_valid_forms()}")
    text = spec.strip()
    if text in ("embedded", "embedded:"):
        return "embedded", DEFAULT_EMBEDDED
    if text.startswith("embedded:"):
        name = text.removeprefix("embedded:")
        if name not in EMBEDDED_MODELS:
            raise ModelLoadError(f"unknown embedded model {name!r} in {spec!r}; valid: {_valid_forms()}")
        return "embedded", name
    if text.startswith("arch:"):
        name = text.removeprefix("arch:")
        if name not in ARCH_PRESETS:
            raise ModelLoadError(f"unknown arch preset {name!r} in {spec!r}; valid: {_valid_forms()}")
        return "arch", name
    if text.startswith("path:"):
        folder = text.removeprefix("path:")
        if not folder:
            raise ModelLoadError(f"empty path in {spec!r}; valid: {_valid_forms()}")
        return "path", str(Path(folder).expanduser().resolve())
    if text.startswith("hub:"):
        repo_id = text.removeprefix("hub:")
        if not _HUB_ID.match(repo_id) or ".." in repo_id:
            raise ModelLoadError(f"invalid hub id {repo_id!r} in {spec!r}; valid: {_valid_forms()}")
        return "hub", repo_id
    # An existing folder wins over a hub id of the same spelling; 'a/b/c' cannot be a hub id.
    looks_like_path = text.startswith(("/", ".", "~")) or text.count("/") > 1 or "\\" in text
    if looks_like_path or (text and os.path.exists(os.path.expanduser(text))):
        return "path", str(Path(text).expanduser().resolve())
    if _HUB_ID.match(text) and ".." not in text:
        return "hub", text
    raise ModelLoadError(f"cannot interpret model spec {spec!r}; valid: {_valid_forms()}")


def _default_dtype(kind: str, device: torch.device) -> torch.dtype:
    if kind != "embedded" and device.type == "cuda":
        return torch.float16
    return torch.float32


def _pipeline_kwargs(model_index: Path) -> dict[str, Any]:
    """Drop a Stable Diffusion safety checker: it would black out flagged images (corrupting quality
    comparisons) and add latency outside the denoiser."""
    try:
        index = json.loads(model_index.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read {model_index}: {e}") from e
    if isinstance(index, dict) and "safety_checker" in index:
        return {"safety_checker": None, "requires_safety_checker": False}
    return {}


def _dtype_kwargs(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """``dtype=`` where diffusers deprecates ``torch_dtype=`` (0.42 does), ``torch_dtype=`` before."""
    from diffusers.utils import deprecation_utils

    return {"dtype": dtype} if hasattr(deprecation_utils, "_resolve_dtype") else {"torch_dtype": dtype}


def _from_folder(folder: str, source: str, *, dtype: torch.dtype) -> DiffusionPipeline:
    model_index = Path(folder) / "model_index.json"
    try:
        with quiet_loading():
            return DiffusionPipeline.from_pretrained(
                folder, local_files_only=True, **_dtype_kwargs(dtype), **_pipeline_kwargs(model_index),
                **low_cpu_mem_usage(),
            )
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"could not load the diffusers pipeline for {source!r}: {e}") from e


def _hub_not_cached(repo_id: str, cache_dir: str | None) -> ModelLoadError:
    where = cache_dir or "the Hugging Face cache (HF_HUB_CACHE / HF_HOME, default ~/.cache/huggingface/hub)"
    return ModelLoadError(
        f"the weights of hub model {repo_id!r} are not cached locally (looked in {where}); cachesearch never "
        f"downloads. Either run `huggingface-cli download {repo_id}` (or `hf download {repo_id}`) on a "
        f"connected machine and copy the cache here (set HF_HOME/HF_HUB_CACHE to it), or copy the pipeline "
        f"folder (the one with model_index.json) here and pass its path instead of the hub id."
    )


def _from_hub(repo_id: str, *, dtype: torch.dtype, cache_dir: str | None) -> DiffusionPipeline:
    from huggingface_hub import try_to_load_from_cache

    try:
        index = try_to_load_from_cache(repo_id, "model_index.json", cache_dir=cache_dir)
    except ValueError as e:  # HFValidationError: malformed repo id
        raise ModelLoadError(f"invalid hub id {repo_id!r}: {e}; valid: {_valid_forms()}") from e
    if not isinstance(index, str):
        raise _hub_not_cached(repo_id, cache_dir)
    try:
        with quiet_loading():
            return DiffusionPipeline.from_pretrained(
                repo_id,
                local_files_only=True,
                cache_dir=cache_dir,
                **_dtype_kwargs(dtype),
                **_pipeline_kwargs(Path(index)),
                **low_cpu_mem_usage(),
            )
    except (OSError, ValueError) as e:
        raise ModelLoadError(
            f"hub model {repo_id!r} is only partly cached locally ({e}); re-run "
            f"`huggingface-cli download {repo_id}` on a connected machine and copy the cache here"
        ) from e


def _denoiser_and_family(pipe: DiffusionPipeline, source: str) -> tuple[torch.nn.Module, str]:
    from cachesearch.adapters import adapters, denoiser_of, family_of
    from cachesearch.schedule import ScheduleError

    try:
        denoiser = denoiser_of(pipe)
        return denoiser, family_of(denoiser)
    except ScheduleError as e:
        supported = "; ".join(f"{a.description} (pipe.{a.pipeline_attribute})" for a in adapters())
        raise ModelLoadError(
            f"unsupported denoiser in {type(pipe).__name__} from {source!r}: {e}; cachesearch supports {supported}"
        ) from e


def load_model(
    spec: str = "embedded",
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> LoadedModel:
    """Load the pipeline named by ``spec`` (see the module docstring for the forms) without any download.

    Args:
        spec: ``"embedded"`` (default), ``"embedded:shapes"``, ``"arch:sd15"``, ``"arch:sdxl"``, a pipeline
            folder or a hub id that is in the local Hugging Face cache.
        device: Where to put the pipeline.
        dtype: Parameter dtype. Default: float16 on CUDA for ``arch:``, folders and hub ids; float32 on
            other devices and for the embedded model.
        cache_dir: Hugging Face hub cache to look hub ids up in (default: the standard one, HF_HUB_CACHE).

    Raises:
        ModelLoadError: bad spec, unknown preset, missing folder, hub id not cached locally, or a pipeline
            without a supported denoiser.
        ValueError: invalid ``device`` or ``dtype``.
    """
    kind, value = normalize_spec(spec)
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"invalid device {device!r}") from e
    if dtype is None:
        dtype = _default_dtype(kind, dev)
    elif not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch.dtype or None, got {dtype!r}")

    if kind == "embedded":
        source = f"embedded:{value}"
        try:
            pipe = embedded_package(source).load_pipeline(device=dev, dtype=dtype)
        except FileNotFoundError as e:
            raise ModelLoadError(f"the embedded model's weights are missing from the package: {e}") from e
        random_weights = bool(getattr(pipe, "_cachesearch_random_weights", False))
    elif kind == "arch":
        source = f"arch:{value}"
        try:
            pipe = build_arch_pipeline(value, device=dev, dtype=dtype, components="full")
        except ValueError as e:
            raise ModelLoadError(str(e)) from None
        random_weights = True
    elif kind == "path":
        source = f"path:{value}"
        folder = Path(value)
        if not folder.exists():
            raise ModelLoadError(f"no such folder: {value} (spec {spec!r}); valid: {_valid_forms()}")
        if not (folder / "model_index.json").is_file():
            raise ModelLoadError(
                f"{value} is not a diffusers pipeline folder (no model_index.json); single-file checkpoints "
                f"are not supported: convert them with diffusers and pass the folder"
            )
        pipe = _from_folder(value, source, dtype=dtype).to(dev)
        random_weights = bool(getattr(pipe, "_cachesearch_random_weights", False))
    else:
        source = f"hub:{value}"
        pipe = _from_hub(value, dtype=dtype, cache_dir=None if cache_dir is None else os.fspath(cache_dir))
        pipe = pipe.to(dev)
        random_weights = bool(getattr(pipe, "_cachesearch_random_weights", False))

    denoiser, family = _denoiser_and_family(pipe, source)
    pipe.set_progress_bar_config(disable=True)
    pipe._cachesearch_source = source  # compile_schedule records it as model.source
    return LoadedModel(
        pipe=pipe, denoiser=denoiser, source=source, random_weights=random_weights, family=family
    )
