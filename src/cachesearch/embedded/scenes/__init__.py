"""The embedded model ``embedded:scenes``: 64 px text-to-image diffusion of two textured objects on a gradient.

Captions are ``a {color} {shape} and a {color} {shape} on a {color} background``; sizes, positions, textures
(solid, stripes, checkerboard) and the background gradient are left to the sampler, so, unlike ``shapes``,
sampling trajectories curve and fewer steps change the image. The shipped pipeline (``pipeline_path()``) was
trained from scratch by ``training/scenes.py`` in the repository (same UNet, text encoder and scheduler as
``shapes``; a 4x autoencoder); :func:`check` scores an image against its caption.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ._checker import SceneCheck, check
from ._data import DEFAULT_SIZE, SceneCaption, all_captions, parse_caption, random_caption, render

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline

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

DEFAULT_STEPS = 50
"""Default number of DDIM steps."""

DEFAULT_GUIDANCE_SCALE = 5.0
"""Default classifier-free guidance scale (that of ``shapes``; see ``artifacts/embedded-scenes``)."""


def pipeline_path() -> Path:
    """Folder of the shipped diffusers pipeline."""
    return Path(__file__).resolve().parent / "pipeline"


def load_pipeline(
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    *,
    path: str | Path | None = None,
    progress_bar: bool = False,
) -> StableDiffusionPipeline:
    """Load the shipped pipeline offline as a ``StableDiffusionPipeline`` (see ``shapes.load_pipeline``)."""
    from ..shapes import load_pipeline as _load
    from ._vae import load_vae

    folder = Path(path) if path is not None else pipeline_path()
    extra = {}
    if (folder / "vae" / "config.json").is_file():  # a sub-pixel decoder needs its own class (see ._vae)
        extra["vae"] = load_vae(str(folder / "vae"), local_files_only=True, torch_dtype=dtype)
    return _load(device, dtype, path=folder, progress_bar=progress_bar, **extra)
