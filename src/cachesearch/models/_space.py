"""The costed block space of a denoiser: its adapter's blocks, optionally with per-block MACs."""

from __future__ import annotations

import torch

from ..schedule import BlockSpace
from .adapters import adapter_for

__all__ = ["block_space"]


def block_space(denoiser: torch.nn.Module, *, with_costs: bool = False) -> BlockSpace:
    """The :class:`BlockSpace` of ``denoiser``; with ``with_costs`` also per-block MACs (one meta-device call)."""
    adapter = adapter_for(denoiser)
    if not with_costs:
        return adapter.block_space(denoiser)
    from ._cost import denoiser_costs  # lazy: FlopCounterMode is only needed for costs

    macs, other = denoiser_costs(denoiser)
    return adapter.block_space(denoiser, macs=macs, other_macs=other)
