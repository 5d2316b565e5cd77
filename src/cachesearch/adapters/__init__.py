"""Denoiser adapters: the generic transformer adapter (:mod:`._dit`, from diffusers' metadata), a module per family
for what is special (UNet2D; FLUX, SD3, PixArt), and the example-input tables of the transformer classes.

A transformer with a block list diffusers names needs no module here; a new family is one module plus its import
below.
"""

from __future__ import annotations

from . import (  # noqa: F401
    _examples_flux,
    _examples_image,
    _examples_video,
    _layouts,
    flux,
    pixart,
    sana_wm_refiner,
    sd3,
    unet2d,
    wan,
    wan_animate2,
)
from ._calls import CallRoles, call_roles_of, register_call_roles
from ._dit import (
    Component,
    TransformerAdapter,
    block_lists_of,
    diffusers_hook_problem,
    register_block_lists,
    register_components,
)
from ._examples import Example, Make, Sizes, example_for, register_example_inputs
from ._video import VideoAdapter
from .base import (
    CFG,
    BlockIO,
    DenoiserAdapter,
    adapter_for,
    adapters,
    block_io_of,
    denoiser_of,
    family_of,
    register_adapter,
    register_block_io,
)

__all__ = [
    "CFG",
    "BlockIO",
    "CallRoles",
    "Component",
    "DenoiserAdapter",
    "Example",
    "Make",
    "Sizes",
    "TransformerAdapter",
    "VideoAdapter",
    "adapter_for",
    "adapters",
    "block_io_of",
    "block_lists_of",
    "call_roles_of",
    "denoiser_of",
    "diffusers_hook_problem",
    "example_for",
    "family_of",
    "register_adapter",
    "register_block_io",
    "register_block_lists",
    "register_call_roles",
    "register_components",
    "register_example_inputs",
]

