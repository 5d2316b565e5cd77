"""Fréchet distance (an FID analogue in the shipped ST-LPIPS AlexNet's feature space): exact properties on
synthetic features, agreement with the textbook formula, and the features of real images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cachesearch.evaluate as ce
from cachesearch.evaluate._frechet import FEATURE_SPACE, frechet_distance, perceptual_features


def _gauss(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mix + shift


def _direct(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula with scipy's general matrix square root (as pytorch-fid computes it)."""
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s_a @ s_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean))


def test_public_names():
    assert ce.frechet_distance is frechet_distance and ce.perceptual_features is perceptual_features
    assert ce.FEATURE_SPACE == FEATURE_SPACE


def test_identical_sets_are_zero_even_when_singular():
    x = _gauss(40, 8, 0)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    few = _gauss(6, 50, 1)  # N << D: singular covariances
    assert frechet_distance(few, few) == pytest.approx(0.0, abs=1e-7)
    assert frechet_distance(few, few, eps=0.0) == pytest.approx(0.0, abs=1e-6)


def test_grows_with_a_shift():
    x, y = _gauss(200, 6, 0), _gauss(200, 6, 1)
    values = [frechet_distance(x, y + s) for s in (0.0, 0.5, 1.0, 2.0)]
    assert values == sorted(values) and values[-1] > values[0] + 6 * 3.0  # the mean term alone adds 6 * 4


def test_symmetric():
    x, y = _gauss(50, 5, 0), _gauss(30, 5, 2, shift=0.3)
    assert frechet_distance(x, y) == pytest.approx(frechet_distance(y, x), rel=1e-9)


def test_matches_direct_formula():
    x, y = _gauss(60, 4, 0), _gauss(80, 4, 3, shift=0.7) * 1.5
    assert frechet_distance(x, y, eps=0.0) == pytest.approx(_direct(x, y), rel=1e-8)
    assert frechet_distance(x, y) == pytest.approx(_direct(x, y), rel=1e-4)  # the ridge changes it by ~2 eps D


def test_refuses_bad_inputs():
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet_distance(_gauss(10, 4, 0), _gauss(10, 5, 0))
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(_gauss(1, 4, 0), _gauss(10, 4, 0))
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(np.zeros(4), _gauss(10, 4, 0))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.full((3, 2), np.nan), _gauss(10, 2, 0))
    with pytest.raises(ValueError, match="eps"):
        frechet_distance(_gauss(10, 2, 0), _gauss(10, 2, 1), eps=-1.0)


def test_features_of_images():
    g = torch.Generator().manual_seed(0)
    imgs = torch.rand(3, 3, 32, 32, generator=g)
    f = perceptual_features(imgs)
    assert f.shape == (3, 64 + 192 + 384 + 256 + 256) and f.dtype == np.float64 and np.isfinite(f).all()
    assert np.allclose(perceptual_features(imgs[:1]), f[:1], atol=1e-5)  # per image, batch-independent
    grey = perceptual_features(imgs[:, :1])
    assert np.allclose(grey, perceptual_features(imgs[:, :1].expand(-1, 3, -1, -1)), atol=1e-6)
    # a darker copy is further away than a slightly noisy copy
    base = torch.rand(8, 3, 32, 32, generator=g) * 0.5 + 0.25
    noisy = (base + 0.01 * torch.randn(base.shape, generator=g)).clamp(0, 1)
    fb = perceptual_features(base)
    assert frechet_distance(fb, perceptual_features(noisy)) < frechet_distance(fb, perceptual_features(base * 0.3))
    with pytest.raises(TypeError):
        perceptual_features(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="metric"):
        perceptual_features(imgs, metric=object())  # type: ignore[arg-type]


def test_low_rank_computation_equals_the_full_one():
    """The span-restricted computation gives the D-dimensional value, singular or not, with and without ridge."""

    def full(a: np.ndarray, b: np.ndarray, eps: float) -> float:
        s_a = np.cov(a, rowvar=False) + eps * np.eye(a.shape[1])
        s_b = np.cov(b, rowvar=False) + eps * np.eye(a.shape[1])
        w, v = np.linalg.eigh(s_a)  # scipy's sqrtm loses ~1e-4 relative on singular matrices (eps=0 here)
        root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        tr = np.sqrt(np.clip(np.linalg.eigvalsh(root @ s_b @ root), 0, None)).sum()
        return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * tr)

    for n_a, n_b, d in ((5, 7, 40), (30, 40, 6)):
        x, y = _gauss(n_a, d, 0), _gauss(n_b, d, 1, shift=0.2)
        for eps in (0.0, 1e-6, 1e-2):
            assert frechet_distance(x, y, eps=eps) == pytest.approx(full(x, y, eps), rel=1e-6, abs=1e-8)
