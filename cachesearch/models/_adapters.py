"""Pick the adapter for a denoiser and build its block space."""

from __future__ import annotations

import torch

from ..schedule import BlockSpace, ScheduleError
from ._unet2d import unet2d_block_space

__all__ = ["block_space", "family_of"]


def family_of(denoiser: torch.nn.Module) -> str:
    """Adapter family of a denoiser (``"unet2d"``), or raise naming what is supported."""
    if hasattr(denoiser, "down_blocks") and hasattr(denoiser, "up_blocks"):
        return "unet2d"
    raise ScheduleError(
        f"no cachesearch adapter for {type(denoiser).__name__}; supported: UNet2DConditionModel-like UNets "
        f"(SD 1.x/2.x, SDXL, the embedded model)"
    )


def block_space(denoiser: torch.nn.Module, *, with_costs: bool = False) -> BlockSpace:
    """The :class:`BlockSpace` of ``denoiser``; with ``with_costs`` also per-block MACs (one traced call)."""
    family = family_of(denoiser)
    if family == "unet2d":
        if not with_costs:
            return unet2d_block_space(denoiser)
        from ._cost import unet2d_costs

        macs, other = unet2d_costs(denoiser)
        return unet2d_block_space(denoiser, macs=macs, other_macs=other)
    raise AssertionError(family)  # pragma: no cover
