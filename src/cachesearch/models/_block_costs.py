"""Per-block MACs of one denoiser call of a model spec, at a render size: what ``cachesearch blocks`` prints.

Denoiser-only presets (``arch:wan2.1-14b``, ...) are built on the meta device at their pipeline's default size;
other ``arch:`` presets build their whole pipeline on meta (the VAE's compression and the default size come from
it); folders, hub ids and embedded models are loaded as ``cachesearch run`` loads them. Nothing is allocated for
the presets, so the costs of a 32 B transformer at 1024 px print in seconds on a laptop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..schedule import BlockKind, BlockSpace

__all__ = ["BlockCosts", "block_costs", "costed_latent_size"]


@dataclass(frozen=True)
class BlockCosts:
    """The costed block space of one model at one size.

    Attributes:
        source: the model spec.
        cls, family: the denoiser class and its adapter family.
        space: its blocks and components, each with MACs of one call (batch 1).
        height, width, frames: the render size in pixels (``frames`` ``None`` for images).
        latent: ``(height, width, frames)`` of the latents the MACs are counted at.
        experts: denoisers the pipeline switches between (each step runs one, so a step costs one call).
    """

    source: str
    cls: str
    family: str
    space: BlockSpace
    height: int
    width: int
    frames: int | None
    latent: tuple[int, int, int | None]
    experts: int = 1

    @property
    def total(self) -> int:
        """MACs of one call: the stages plus everything outside them."""
        return int(self.space.other_macs or 0) + sum(int(b.macs or 0) for b in self.space.blocks
                                                     if b.kind is BlockKind.STAGE)


def costed_latent_size(adapter: Any, pipe: Any, height: int, width: int,
                       frames: int | None) -> tuple[int, int, int | None]:
    """Latent ``(height, width, frames)`` of a ``height × width`` (× ``frames``) render of ``pipe``: what per-block
    MACs are counted at (the VAE latents, before any patching the denoiser does)."""
    from ..adapters import VideoAdapter

    if isinstance(adapter, VideoAdapter):
        s = adapter.spatial_factor(pipe)
        f = adapter.num_frames(pipe) if frames is None else frames
        return height // s, width // s, adapter.latent_frames(pipe, f)
    factor = int(getattr(pipe, "vae_scale_factor", 8) or 8)
    return height // factor, width // factor, None


def block_costs(spec: str, *, height: int | None = None, width: int | None = None,
                frames: int | None = None) -> BlockCosts:
    """The per-block MACs of model ``spec`` for one call at ``height × width`` pixels (× ``frames``; defaults: what
    the model's pipeline renders).

    Raises:
        ModelLoadError: an unknown or unloadable spec.
        ValueError: ``frames`` for an image model, or non-positive sizes.
    """
    from ..adapters import VideoAdapter, adapter_for
    from ..runtime import experts_of
    from ._errors import ModelLoadError
    from ._loaders import load_model, normalize_spec
    from ._presets import build_arch_pipeline
    from ._presets_denoisers import DENOISER_PRESETS, build_preset_denoiser, preset
    from ._space import block_space

    for name, value in (("height", height), ("width", width), ("frames", frames)):
        if value is not None and value < 1:
            raise ValueError(f"--{name}: expected a positive number, got {value}")
    kind, value = normalize_spec(spec)
    if kind == "arch" and value in DENOISER_PRESETS:
        p = preset(value)
        if frames is not None and p.frames is None:
            raise ValueError(f"--frames: arch:{value} renders images, not videos")
        denoiser = build_preset_denoiser(value)
        h, w, f = height or p.height, width or p.width, (frames or p.frames)
        latent, experts = p.latent_size(h, w, f), p.experts
    else:
        try:
            pipe = (build_arch_pipeline(value, device="meta", components="full") if kind == "arch"
                    else load_model(spec).pipe)
        except ValueError as e:
            raise ModelLoadError(str(e)) from None
        denoiser = experts_of(pipe)[0][1]
        adapter = adapter_for(denoiser)
        video = isinstance(adapter, VideoAdapter)
        if frames is not None and not video:
            raise ValueError(f"--frames: {spec} renders images, not videos")
        default_h, default_w = adapter.default_size(pipe)
        h, w = height or default_h, width or default_w
        f = (frames or adapter.num_frames(pipe)) if video else None
        latent, experts = costed_latent_size(adapter, pipe, h, w, f), len(experts_of(pipe))
    size = {} if latent[2] is None else {"frames": latent[2]}
    with torch.no_grad():
        space = block_space(denoiser, with_costs=True, latent_size=latent[:2], **size)
    return BlockCosts(source=spec, cls=type(denoiser).__name__, family=adapter_for(denoiser).family, space=space,
                      height=h, width=w, frames=f, latent=latent, experts=experts)
