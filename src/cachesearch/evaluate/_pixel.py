"""Pixel-level quality of candidate images against their references: PSNR and SSIM, and the checks every quality
metric makes of an image pair first (:func:`check_pair`). scikit-image is imported inside :func:`ssim`."""

from __future__ import annotations

import math
from typing import Any

import torch

from cachesearch.evaluate._errors import InvalidOutputError

__all__ = ["check_pair", "psnr", "ssim"]


def check_pair(images: torch.Tensor, references: torch.Tensor) -> None:
    """Validate a batch of candidate images against its references (NCHW, float, [0, 1], same shape)."""
    for label, t in (("images", images), ("references", references)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{label} must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim != 4:
            raise ValueError(f"{label} must be NCHW (4 dimensions), got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"{label} must be a floating-point tensor in [0, 1], got dtype {t.dtype}")
    if images.shape != references.shape:
        raise ValueError(f"images {tuple(images.shape)} and references {tuple(references.shape)} differ in shape")
    n, c, h, w = images.shape
    if n == 0 or h == 0 or w == 0:
        raise ValueError(f"empty batch: shape {tuple(images.shape)}")
    if c not in (1, 3):
        raise ValueError(f"expected 1 (grey) or 3 (RGB) channels, got {c}")
    bad = ~torch.isfinite(images).flatten(1).all(dim=1)
    num_bad = int(bad.sum())
    if num_bad:
        raise InvalidOutputError(num_bad, n)
    if not bool(torch.isfinite(references).all()):
        raise ValueError("references contain NaN or inf values")
    for label, t in (("images", images), ("references", references)):
        lo, hi = float(t.min()), float(t.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"{label} must lie in [0, 1] (clamp decoded outputs first), got min {lo}, max {hi}")


def psnr(images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image (data range 1), float64 CPU tensor [N]; inf if identical."""
    check_pair(images, references)
    diff = images.detach().to("cpu", torch.float64) - references.detach().to("cpu", torch.float64)
    mse = diff.pow(2).flatten(1).mean(dim=1)
    return torch.where(mse == 0, torch.full_like(mse, math.inf), -10.0 * torch.log10(mse))


#: Gaussian window of the original SSIM (Wang et al. 2004): sigma 1.5, 11x11; images need >= 11 px per side.
_SSIM_MIN_SIZE = 11


def ssim(images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Structural similarity per image (data range 1), float64 CPU tensor [N]; 1.0 if identical.

    Uses ``skimage.metrics.structural_similarity`` with the settings of Wang et al. (2004): Gaussian window
    sigma 1.5, population covariance; for RGB the mean over channels. Images must be at least 11 px per side.
    """
    check_pair(images, references)
    if min(images.shape[-2:]) < _SSIM_MIN_SIZE:
        raise ValueError(f"SSIM needs images of at least {_SSIM_MIN_SIZE} px per side, got {tuple(images.shape)}")
    from skimage.metrics import structural_similarity

    a = images.detach().to("cpu", torch.float64).permute(0, 2, 3, 1).numpy()
    b = references.detach().to("cpu", torch.float64).permute(0, 2, 3, 1).numpy()
    kwargs: dict[str, Any] = dict(data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    values = [
        structural_similarity(x, y, channel_axis=-1, **kwargs)
        if x.shape[-1] > 1
        else structural_similarity(x[..., 0], y[..., 0], **kwargs)
        for x, y in zip(a, b, strict=True)
    ]
    return torch.tensor(values, dtype=torch.float64)
