"""Model adapters (block lists, DeepCache branches, costs), loaders and the embedded model."""

from ._adapters import block_space, family_of
from ._cost import MacsReport, module_macs, unet2d_costs
from ._errors import ModelLoadError
from ._loaders import LoadedModel, load_model
from ._presets import ARCH_PRESETS, arch_param_counts, build_arch_pipeline
from ._unet2d import unet2d_block_space

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
