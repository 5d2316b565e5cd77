"""The costed block space of a denoiser: its adapter's blocks, optionally with per-block MACs."""

from __future__ import annotations

import torch

from ..adapters import adapter_for
from ..schedule import BlockSpace

__all__ = ["block_space"]


def block_space(
    denoiser: torch.nn.Module, *, with_costs: bool = False, latent_size: tuple[int, int] | None = None,
    frames: int | None = None,
) -> BlockSpace:
    """The :class:`BlockSpace` of ``denoiser``; with ``with_costs`` also per-block MACs (one meta-device call)
    for latents of ``latent_size`` (VAE latent height, width; default: the adapter's, e.g. the UNet's
    ``sample_size``, FLUX.1's 128 × 128) and, for a video denoiser, ``frames`` latent frames (default: the
    adapter's). Attention MACs grow with the token count, so costs of a transformer should be taken at the size
    (and clip length) it runs at."""
    adapter = adapter_for(denoiser)
    if not with_costs:
        return adapter.block_space(denoiser)
    from ._cost import denoiser_costs  # lazy: FlopCounterMode is only needed for costs

    height, width = latent_size if latent_size is not None else (None, None)
    macs, other = denoiser_costs(denoiser, height=height, width=width, frames=frames)
    return adapter.block_space(denoiser, macs=macs, other_macs=other)
