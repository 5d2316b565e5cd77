"""Model adapters (block lists, DeepCache branches, costs), loaders and the embedded model."""

from ._adapters import block_space, family_of
from ._unet2d import unet2d_block_space

__all__ = ["block_space", "family_of", "unet2d_block_space"]
