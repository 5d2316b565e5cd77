"""What the video families add to an adapter: frames.

A video pipeline renders ``num_frames`` frames; its VAE compresses them in time by ``vae_scale_factor_temporal``
(``(frames - 1) // factor + 1`` latent frames, the first frame alone) and in space by ``vae_scale_factor_spatial``.
A :class:`VideoAdapter` knows the pipeline's default clip length and size (its ``__call__`` defaults, or what a
random-weight preset sets on the pipeline) and puts the latent frames into the latent shape and the example inputs,
so the evaluator draws latents of the right shape and MAC counts cover every frame.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from ._dit import TransformerAdapter

__all__ = ["DEFAULTS_ATTR", "VideoAdapter", "call_default"]

DEFAULTS_ATTR = "_cachesearch_defaults"
"""Pipeline attribute (a dict with ``height``, ``width``, ``num_frames``) overriding its ``__call__`` defaults: how a
tiny random-weight pipeline states the size it is meant to run at."""


def call_default(pipe: Any, name: str, fallback: int) -> int:
    """The pipeline's default for ``__call__`` argument ``name`` (:data:`DEFAULTS_ATTR` first, then the signature)."""
    given = (getattr(pipe, DEFAULTS_ATTR, None) or {}).get(name)
    if given is not None:
        return int(given)
    param = inspect.signature(type(pipe).__call__).parameters.get(name)
    if param is not None and isinstance(param.default, int) and not isinstance(param.default, bool):
        return int(param.default)
    return fallback


class VideoAdapter(TransformerAdapter):
    """A transformer family that denoises videos: frames in the latent shape, the example inputs and the defaults.

    Attributes:
        default_height, default_width, default_frames: what the pipeline renders when nothing is asked for (its
            ``__call__`` defaults win where it has them).
    """

    video = True
    default_height: int = 480
    default_width: int = 832
    default_frames: int = 81

    def temporal_factor(self, pipe: Any) -> int:
        """Frames per latent frame (the VAE's temporal compression)."""
        return int(getattr(pipe, "vae_scale_factor_temporal", 4) or 4)

    def spatial_factor(self, pipe: Any) -> int:
        """Pixels per latent pixel."""
        return int(getattr(pipe, "vae_scale_factor_spatial", None) or getattr(pipe, "vae_scale_factor", 8) or 8)

    def num_frames(self, pipe: Any) -> int:
        """The pipeline's default clip length in frames."""
        return call_default(pipe, "num_frames", self.default_frames)

    def latent_frames(self, pipe: Any, frames: int) -> int:
        """Latent frames of a ``frames``-frame clip: ``(frames - 1) // factor + 1``."""
        return (int(frames) - 1) // self.temporal_factor(pipe) + 1

    def default_size(self, pipe: Any) -> tuple[int, int]:
        return (call_default(pipe, "height", self.default_height), call_default(pipe, "width", self.default_width))

    def expert_steps(self, pipe: Any, num_steps: int, timesteps: Sequence[int] | None = None) -> tuple[int, ...] | None:
        """Which expert (0: the pipeline's denoiser, 1: its ``<attribute>_2``) runs each denoiser call of a loop of
        ``num_steps`` steps (or explicit ``timesteps``), for a family whose pipelines switch experts; ``None`` when
        one denoiser runs every call (the default)."""
        return None

    def latent_shape(self, pipe: Any, height: int, width: int, frames: int | None = None) -> tuple[int, ...]:
        """``(channels, latent frames, latent height, latent width)`` of one clip (default length if ``frames`` is
        ``None``)."""
        f = self.num_frames(pipe) if frames is None else frames
        s = self.spatial_factor(pipe)
        return (int(pipe.transformer.config.in_channels), self.latent_frames(pipe, f), int(height) // s,
                int(width) // s)
