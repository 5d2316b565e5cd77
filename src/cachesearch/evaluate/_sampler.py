"""The reference sampler: the config's ``None`` defaults resolved into the model's guidance and image size."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._config import EvalConfig, EvalConfigError

if TYPE_CHECKING:
    from cachesearch.adapters import DenoiserAdapter

__all__ = ["ReferenceSampler", "resolve_sampler"]


@dataclass(frozen=True, kw_only=True)
class ReferenceSampler:
    """The resolved sampler settings of the full-compute reference (no ``None`` defaults left)."""

    num_inference_steps: int
    guidance_scale: float
    height: int
    width: int
    num_frames: int | None = None
    """Frames of each clip for a video model (``None``: an image model)."""


def _default_guidance(pipe: Any, source: str) -> float:
    from cachesearch.embedded import embedded_package

    package = embedded_package(source)
    if package is not None:
        return float(package.DEFAULT_GUIDANCE_SCALE)
    param = inspect.signature(type(pipe).__call__).parameters.get("guidance_scale")
    if param is None or not isinstance(param.default, (int, float)):
        return 7.5
    return float(param.default)


def _check_size(adapter: DenoiserAdapter, pipe: Any, height: int, width: int) -> None:
    """Refuse an image side that is not a whole number of latent pixels.

    The adapter knows only the pixel → latent map, so a side ``v`` is whole when the latents of ``v`` and
    ``v - 1`` pixels differ (floor division by the factor); the nearest whole sides below and above name the
    factor in the message.
    """
    for name in ("height", "width"):
        v = height if name == "height" else width

        def shape(x: int, name: str = name) -> tuple[int, ...]:
            h, w = (x, width) if name == "height" else (height, x)
            return tuple(adapter.latent_shape(pipe, h, w))

        def whole(x: int) -> bool:
            return shape(x) != shape(x - 1)

        if whole(v):
            continue
        lo = next((x for x in range(v - 1, 0, -1) if whole(x)), 0)
        hi = next(x for x in range(v + 1, 2 * v + 4096) if whole(x))
        sizes = f"{lo} or {hi} px" if lo else f"{hi} px"
        raise EvalConfigError(
            f"EvalConfig.{name}: {v} px is not a multiple of the latent pixel factor {hi - lo} of this pipeline; "
            f"use {sizes}"
        )


def resolve_sampler(config: EvalConfig, pipe: Any, adapter: DenoiserAdapter, source: str) -> ReferenceSampler:
    """The reference sampler of ``config`` on ``pipe``: the model's default guidance and image size (and, for a
    video model, clip length) where the config says ``None``.

    Raises:
        EvalConfigError: the image size is not a whole number of latent pixels.
    """
    from cachesearch.adapters import VideoAdapter

    g = config.guidance_scale
    default_h, default_w = adapter.default_size(pipe)
    height = config.height or default_h
    width = config.width or default_w
    _check_size(adapter, pipe, height, width)
    frames = None
    if isinstance(adapter, VideoAdapter):
        frames = config.num_frames or adapter.num_frames(pipe)
    elif config.num_frames is not None:
        raise EvalConfigError(f"EvalConfig.num_frames: {type(pipe).__name__} renders images, not videos; leave it "
                              f"unset")
    return ReferenceSampler(
        num_inference_steps=config.num_inference_steps,
        guidance_scale=_default_guidance(pipe, source) if g is None else g,
        height=height,
        width=width,
        num_frames=frames,
    )
