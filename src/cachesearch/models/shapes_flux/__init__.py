"""The embedded model ``embedded:shapes-flux``: a FLUX-architecture text-to-image model on the ``scenes`` data.

Same captions, renders and checker as ``scenes`` (two textured objects on a gradient, 64 px) and the same
frozen autoencoder; the denoiser is a ``FluxTransformer2DModel`` (double- and single-stream blocks, joint
text-image attention, RoPE) trained from scratch by rectified flow (``cachesearch.models.shapes_flux._train``)
and sampled by ``FluxPipeline``'s flow-matching Euler loop, one denoiser call per step (no CFG batch).
The pipeline class is :class:`EmbeddedFluxPipeline`, ``FluxPipeline`` with this model's two defaults.
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

DEFAULT_GUIDANCE_SCALE = 1.0
"""No guidance: the transformer has no guidance embedding and the pipeline makes no CFG batch."""


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
    from .._embedded import load_folder
    from ._pipeline import EmbeddedFluxPipeline, mark_text_tokens

    pipe = load_folder(EmbeddedFluxPipeline, path if path is not None else pipeline_path(), device=device,
                       dtype=dtype, progress_bar=progress_bar)
    mark_text_tokens(pipe)
    return pipe
