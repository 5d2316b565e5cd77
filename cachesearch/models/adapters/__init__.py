"""Denoiser adapters: one module per family; each registers a :class:`DenoiserAdapter` and its block I/O.

Adding a family = one new module here plus its import below.
"""

from __future__ import annotations

import torch

from ...schedule import BlockSpace
from . import unet2d  # noqa: F401  (registers the UNet2D adapter)
from .base import (
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
    "BlockIO",
    "DenoiserAdapter",
    "adapter_for",
    "adapters",
    "block_io_of",
    "block_space",
    "denoiser_of",
    "family_of",
    "register_adapter",
    "register_block_io",
]


def block_space(denoiser: torch.nn.Module, *, with_costs: bool = False) -> BlockSpace:
    """The :class:`BlockSpace` of ``denoiser``; with ``with_costs`` also per-block MACs (one meta-device call)."""
    adapter = adapter_for(denoiser)
    if not with_costs:
        return adapter.block_space(denoiser)
    from .._cost import denoiser_costs

    macs, other = denoiser_costs(denoiser)
    return adapter.block_space(denoiser, macs=macs, other_macs=other)
