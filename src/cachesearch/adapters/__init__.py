"""Denoiser adapters: one module per family; each registers a :class:`DenoiserAdapter` and its block I/O.

Adding a family = one new module here plus its import below (transformer families share :mod:`._dit`).
"""

from __future__ import annotations

from . import flux, pixart, sd3, unet2d  # noqa: F401  (importing a family registers its adapter)
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
    "denoiser_of",
    "family_of",
    "register_adapter",
    "register_block_io",
]

