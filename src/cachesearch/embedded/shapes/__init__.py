"""The embedded default model ``embedded:shapes``: a tiny text-to-image diffusion model of procedural shapes.

Images are 32 px RGB renders of one shape (circle, square, triangle, cross) in one palette color on a plain
background of another, captioned ``a {color} {shape} on a {color} background``. The shipped diffusers pipeline
(``pipeline_path()``) was trained from scratch by the repository's ``training/shapes.py`` (not installed);
:func:`check` scores generated images against their caption, so quality can be measured without reference models.

Importing this package loads numpy and torch only; diffusers is imported by :func:`load_pipeline`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ._checker import CheckResult, check
from ._data import (
    COLORS,
    PALETTE,
    SHAPES,
    Caption,
    all_captions,
    caption,
    parse_caption,
    random_caption,
    render,
    to_model_input,
)
from ._gate import DEFAULT_GUIDANCE_SCALE, DEFAULT_STEPS

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline

__all__ = [
    "COLORS",
    "DEFAULT_GUIDANCE_SCALE",
    "DEFAULT_STEPS",
    "PALETTE",
    "SHAPES",
    "Caption",
    "CheckResult",
    "all_captions",
    "caption",
    "check",
    "load_pipeline",
    "parse_caption",
    "pipeline_path",
    "random_caption",
    "render",
    "to_model_input",
]


def pipeline_path() -> Path:
    """Folder of the shipped diffusers pipeline (model_index.json, unet/, vae/, text_encoder/, tokenizer/, …)."""
    return Path(__file__).resolve().parent / "pipeline"


def load_pipeline(
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    *,
    path: str | Path | None = None,
    progress_bar: bool = False,
    **components: Any,
) -> StableDiffusionPipeline:
    """Load the shipped pipeline offline (``local_files_only=True``) as a ``StableDiffusionPipeline``.

    Args:
        device: device to move the pipeline to.
        dtype: parameter dtype (weights are stored in float32).
        path: another pipeline folder of the same layout (e.g. a training run's output); default: shipped.
        progress_bar: show diffusers' per-call progress bar.
        components: components to use instead of the folder's (``vae=...``), as ``from_pretrained`` takes them.

    Raises:
        FileNotFoundError: if the folder has no ``model_index.json``.
    """
    from diffusers import StableDiffusionPipeline

    from .._registry import load_folder

    return load_folder(StableDiffusionPipeline, path if path is not None else pipeline_path(), device=device,
                       dtype=dtype, progress_bar=progress_bar, safety_checker=None, feature_extractor=None,
                       requires_safety_checker=False, **components)
