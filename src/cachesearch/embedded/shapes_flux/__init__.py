"""The embedded model ``embedded:shapes-flux``: a FLUX-architecture text-to-image model on the ``scenes`` data.

Same captions, renders and checker as ``scenes`` (two textured objects on a gradient, 64 px) and the same
frozen autoencoder; the denoiser is a ``FluxTransformer2DModel`` (double- and single-stream blocks, joint
text-image attention, RoPE) trained from scratch by rectified flow (``training/shapes_flux.py`` in the repository)
and sampled by ``FluxPipeline``'s flow-matching Euler loop, one denoiser call per step. The transformer is
``GuidedFluxTransformer2DModel`` (FLUX's blocks plus learned null conditioning: CFG batched inside the call,
the blocks see ``[uncond; cond]``); the pipeline class is :class:`EmbeddedFluxPipeline`, ``FluxPipeline`` with
this model's defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..scenes import SceneCaption, SceneCheck, all_captions, check, parse_caption, random_caption, render

if TYPE_CHECKING:
    from ._pipeline import EmbeddedFluxPipeline

__all__ = [
    "DEFAULT_GUIDANCE_SCALE",
    "DEFAULT_SIZE",
    "DEFAULT_STEPS",
    "SceneCaption",
    "SceneCheck",
    "all_captions",
    "check",
    "load_pipeline",
    "parse_caption",
    "pipeline_path",
    "random_caption",
    "render",
]

DEFAULT_SIZE = 64
"""Image side in pixels."""

DEFAULT_STEPS = 28
"""Default number of flow-matching Euler steps (FLUX.1-dev's default)."""

DEFAULT_GUIDANCE_SCALE = 3.5
"""Classifier-free guidance scale, batched inside the transformer's one call per step (see ``_guided``)."""


def pipeline_path() -> Path:
    """Folder of the shipped diffusers pipeline."""
    return Path(__file__).resolve().parent / "pipeline"


def load_pipeline(
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    *,
    path: str | Path | None = None,
    progress_bar: bool = False,
) -> EmbeddedFluxPipeline:
    """Load the shipped pipeline offline (``local_files_only=True``) as an :class:`EmbeddedFluxPipeline`.

    Raises:
        FileNotFoundError: if the folder has no ``model_index.json``.
    """
    from .._registry import load_folder
    from ._guided import GuidedFluxTransformer2DModel
    from ._pipeline import EmbeddedFluxPipeline, mark_text_tokens

    folder = Path(path) if path is not None else pipeline_path()
    extra = {}
    if (folder / "transformer" / "config.json").is_file():  # else load_folder names the missing folder
        extra["transformer"] = GuidedFluxTransformer2DModel.from_pretrained(
            str(folder / "transformer"), local_files_only=True, torch_dtype=dtype)
    pipe = load_folder(EmbeddedFluxPipeline, folder, device=device, dtype=dtype, progress_bar=progress_bar, **extra)
    mark_text_tokens(pipe)
    return pipe
