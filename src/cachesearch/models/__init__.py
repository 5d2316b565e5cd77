"""Model loaders (embedded models, ``arch:`` presets, folders, hub ids), MAC counting, and the adapters re-exported.

The adapters are imported eagerly (torch only); loaders, presets and MAC counting resolve lazily, so
``import cachesearch`` does not import diffusers/transformers (and through them torchvision).
"""

from __future__ import annotations

from .._util import lazy_exports
from ..adapters import (
    BlockIO,
    DenoiserAdapter,
    adapter_for,
    block_io_of,
    denoiser_of,
    family_of,
    register_adapter,
    register_block_io,
)
from ..adapters.unet2d import unet2d_block_space, unet2d_example_inputs
from ._space import block_space

_LAZY = {
    "ARCH_PRESETS": "._presets",
    "arch_param_counts": "._presets",
    "build_arch_pipeline": "._presets",
    "MacsReport": "._cost",
    "denoiser_costs": "._cost",
    "module_macs": "._cost",
    "unet2d_costs": "._cost",
    "ModelLoadError": "._errors",
    "LoadedModel": "._loaders",
    "load_model": "._loaders",
}

__all__ = [
    "ARCH_PRESETS",
    "BlockIO",
    "DenoiserAdapter",
    "LoadedModel",
    "MacsReport",
    "ModelLoadError",
    "adapter_for",
    "arch_param_counts",
    "block_io_of",
    "block_space",
    "build_arch_pipeline",
    "denoiser_costs",
    "denoiser_of",
    "family_of",
    "load_model",
    "module_macs",
    "register_adapter",
    "register_block_io",
    "unet2d_block_space",
    "unet2d_costs",
    "unet2d_example_inputs",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
