"""A distribution-level score that needs no download: Fréchet distance in the shipped perceptual network's
feature space.

**This is an FID analogue, not FID.** FID (Heusel et al. 2017) compares Gaussian fits of Inception-v3 pool
features; Inception's weights would be a download, so here the features come from the network the quality
metric already ships and loads: the shift-tolerant LPIPS AlexNet (``stlpips-alex``, weights from the
``stlpips-pytorch`` wheel, see :mod:`._quality`). :func:`perceptual_features` takes, for each of its five
feature layers (ReLU outputs of ``slice1..slice5``: 64, 192, 384, 256, 256 channels), the mean of every channel
over the image, and concatenates them: D = 1152 features per image. :func:`frechet_distance` fits a Gaussian to
each set and returns ``||mu_a - mu_b||² + tr(S_a + S_b - 2 (S_a S_b)^½)``.

Numbers are only comparable with numbers of the same feature space (``FEATURE_SPACE``), image size and sample
sizes. With N images in D = 1152 dimensions the estimate is strongly **biased upwards for small N** (like FID,
more so since N ≪ D here): two independent samples of the same distribution have FD > 0. Report the FD of a
reference sample (e.g. the full-compute images) next to every candidate's as its floor, and compare only
numbers with the same N.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from ._perceptual import ShiftTolerantLpipsAlexMetric

__all__ = ["FEATURE_SPACE", "frechet_distance", "perceptual_features"]

FEATURE_SPACE = "stlpips-alex-channel-means"
"""Name of the feature space of :func:`perceptual_features` (record it with every FD value)."""

DEFAULT_EPS = 1e-6
"""Ridge added to both covariance diagonals by :func:`frechet_distance` (see there)."""


@functools.lru_cache(maxsize=4)
def _shipped_metric(device: str) -> ShiftTolerantLpipsAlexMetric:
    from ._perceptual import ShiftTolerantLpipsAlexMetric

    return ShiftTolerantLpipsAlexMetric(device=device)


def perceptual_features(
    images: torch.Tensor,
    *,
    metric: ShiftTolerantLpipsAlexMetric | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
) -> np.ndarray:
    """Per-image features ``[N, 1152]`` (float64) in the shipped ST-LPIPS AlexNet's feature space.

    Images go through the same preprocessing as the quality metric (``[0, 1]`` → ``[-1, 1]``, grey repeated to
    RGB, bilinear upsampling to the metric's ``min_size`` when smaller, the network's scaling layer); each of the
    five feature layers contributes the spatial mean of each channel.

    Args:
        images: float tensor ``[N, C, H, W]`` in ``[0, 1]``, ``C`` 1 or 3, ``N >= 1``.
        metric: the loaded ``stlpips-alex`` metric whose network to use (e.g. an evaluator's ``metric`` when its
            name is ``"stlpips-alex"``); default: one built once per device from the shipped weights.
        device: where the default metric's network runs (ignored when ``metric`` is given).
        batch_size: images per forward pass.

    Raises:
        TypeError, ValueError: ``images`` is not such a tensor, or ``metric`` is another metric.
        PerceptualMetricUnavailableError: the shipped weights are not installed.
    """
    from ._perceptual import ShiftTolerantLpipsAlexMetric

    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise TypeError(f"images: expected a float tensor [N, C, H, W] in [0, 1], got {got}")
    if images.shape[0] < 1 or images.shape[1] not in (1, 3):
        raise ValueError(f"images: expected N >= 1 and 1 or 3 channels, got shape {tuple(images.shape)}")
    if not bool(torch.isfinite(images).all()):
        raise ValueError("images: contain NaN or inf")
    if metric is None:
        metric = _shipped_metric(str(torch.device(device)))
    elif not isinstance(metric, ShiftTolerantLpipsAlexMetric):
        raise ValueError(f"metric: expected the shipped stlpips-alex metric, got {getattr(metric, 'name', metric)!r}")
    model = metric.model
    out = []
    with torch.inference_mode():
        for lo in range(0, images.shape[0], batch_size):
            x = images[lo : lo + batch_size].to(metric.device, torch.float32).clamp(0, 1)
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            x = metric._resize(x) * 2 - 1
            feats = model.net(model.scaling_layer(x))
            out.append(torch.cat([f.mean(dim=(2, 3)) for f in feats], dim=1).double().cpu())
    return torch.cat(out).numpy()


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray, *, eps: float = DEFAULT_EPS) -> float:
    """Fréchet distance between Gaussian fits of two feature sets ``[N_a, D]`` and ``[N_b, D]``.

    ``||mu_a - mu_b||² + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^½)`` with unbiased covariances (``ddof=1``).
    The trace of the matrix square root is computed in its symmetric form, ``tr((S_a^½ S_b S_a^½)^½)``, by
    eigen-decompositions (exact for positive semi-definite matrices, so no complex parts to drop as with
    ``scipy.linalg.sqrtm``).

    **Small-sample singular case**: with ``N_a + N_b <= D`` (always so for a few dozen images in 1152
    dimensions) both covariances are singular. ``eps`` is a ridge added to both diagonals, ``S + eps·I``, which
    keeps the square roots well conditioned; it changes the result by at most about ``2·eps·D`` (2.3e-3 for the
    default 1e-6 and D = 1152) and leaves ``FD(x, x) = 0``; ``eps=0`` disables it. Both covariances act on the
    span of the centred features only (rank ``r <= N_a + N_b - 2``) and as ``eps·I`` on its complement, so the
    square roots are taken in that ``r``-dimensional span and the complement adds its ``(D - r)·eps`` exactly:
    the same value as the D-dimensional computation at ``O((N_a + N_b)² D)`` cost instead of ``O(D³)``.

    Raises:
        ValueError: not 2-d, fewer than 2 rows, different feature dimensions, non-finite values, ``eps < 0``.
    """
    a = np.asarray(feats_a, dtype=np.float64)
    b = np.asarray(feats_b, dtype=np.float64)
    for label, f in (("feats_a", a), ("feats_b", b)):
        if f.ndim != 2 or f.shape[0] < 2:
            raise ValueError(f"{label}: expected [N, D] with N >= 2, got shape {f.shape}")
        if not np.isfinite(f).all():
            raise ValueError(f"{label}: contains NaN or inf")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]} (same feature space needed)")
    if not (isinstance(eps, (int, float)) and np.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps: expected a finite number >= 0, got {eps!r}")
    d = a.shape[1]
    mu_a, mu_b = a.mean(0), b.mean(0)
    xa = (a - mu_a) / np.sqrt(a.shape[0] - 1)  # S_a = xa.T @ xa
    xb = (b - mu_b) / np.sqrt(b.shape[0] - 1)
    _, sv, vt = np.linalg.svd(np.vstack([xa, xb]), full_matrices=False)
    keep = sv > (sv[0] if sv.size else 0.0) * max(a.shape[0] + b.shape[0], d) * np.finfo(np.float64).eps
    basis = vt[keep]  # [r, D], orthonormal rows spanning both sets of centred features
    r = basis.shape[0]
    pa, pb = xa @ basis.T, xb @ basis.T
    s_a = pa.T @ pa + eps * np.eye(r)
    s_b = pb.T @ pb + eps * np.eye(r)
    root_a = _sqrtm_psd(s_a)
    inner = root_a @ s_b @ root_a
    w = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(w, 0.0, None)).sum()) + (d - r) * eps
    diff = mu_a - mu_b
    tr_a = float((xa * xa).sum()) + d * eps
    tr_b = float((xb * xb).sum()) + d * eps
    return max(float(diff @ diff) + tr_a + tr_b - 2.0 * tr_covmean, 0.0)
