"""Model adapters (block lists, DeepCache branches, costs), loaders and the embedded model.

The adapter is imported eagerly (torch only); loaders, presets and MAC counting resolve lazily, so
``import cachesearch`` does not import diffusers/transformers (and through them torchvision).
"""

from __future__ import annotations

import importlib
from typing import Any

from ._adapters import block_space, family_of
from ._unet2d import unet2d_block_space

_LAZY = {
    "ARCH_PRESETS": "._presets",
    "arch_param_counts": "._presets",
    "build_arch_pipeline": "._presets",
    "MacsReport": "._cost",
    "module_macs": "._cost",
    "unet2d_costs": "._cost",
    "ModelLoadError": "._errors",
    "LoadedModel": "._loaders",
    "load_model": "._loaders",
}

__all__ = [
    "ARCH_PRESETS",
    "LoadedModel",
    "MacsReport",
    "ModelLoadError",
    "arch_param_counts",
    "block_space",
    "build_arch_pipeline",
    "family_of",
    "load_model",
    "module_macs",
    "unet2d_block_space",
    "unet2d_costs",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
