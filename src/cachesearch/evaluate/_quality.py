"""Quality of candidate images against the uncached reference: LPIPS-family distance, PSNR and SSIM.

Perceptual metric choice
------------------------
``"lpips-alex"`` (default)
    LPIPS v0.1 with the AlexNet trunk from the ``lpips`` package. Its linear heads ship in the package, but
    the AlexNet trunk is torchvision's ImageNet checkpoint (``alexnet-owt-7be5be79.pth``, 233 MiB) that
    torchvision downloads on first use. It is used only when that file is already in the torch hub cache
    (``torch.hub.get_dir()/checkpoints``); the check looks at the file and never lets torchvision reach the
    network.

``"stlpips-alex"`` (offline fallback)
    Shift-tolerant LPIPS (Ghildyal & Liu, ECCV 2022), AlexNet trunk, as released in ``stlpips-pytorch``
    0.0.2. The package ships the complete trained network -- trunk, blur-pool filters, scaling layer and
    linear heads -- in ``weights/vST0.0/alex_shift_tolerant.pth`` (9.9 MB, sha256 ``b356b382...``), so it
    needs no download. We load only that file (``torch.load(weights_only=True)``, checksum verified,
    ``load_state_dict(strict=True)`` so a missing or renamed key can never leave a random layer) into a
    60-line re-implementation of the package's network (:mod:`._stlpips_net`). The package's own module is
    not imported: it imports IPython and torchsummary at module level without declaring them (about 54 MB of
    extra installs for two unused imports), and loads its weights with ``strict=False``. A test checks that
    the two implementations agree to float precision.

Alternatives considered and rejected (all are small wheels that ship no trunk weights): ``piq`` and ``piqa``
download LPIPS/DISTS weights at run time; ``DISTS_pytorch`` ships its alpha/beta but needs torchvision's
VGG16 download; ``IQA_pytorch`` and ``MR_perceptual`` likewise build on torchvision downloads; ``pyiqa`` and
``dreamsim`` download from hubs; ``lpips(pnet_rand=True)`` has a random trunk and is not a metric.

The two metrics are different functions with different scales: a study, its results and its YAML files
record ``PerceptualMetric.name`` and values under different names must not be compared.

Small images are upsampled before the trunk (:mod:`._perceptual`).

Modules: :mod:`._perceptual` (the metrics), :mod:`._pixel` (PSNR, SSIM); here the choice between the metrics
(:func:`get_perceptual_metric`) and :func:`quality_report`. Heavy imports (lpips/torchvision, scikit-image)
happen inside functions; importing this module is cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from cachesearch.evaluate._errors import PerceptualMetricUnavailableError
from cachesearch.evaluate._perceptual import (  # noqa: F401 - re-exported: tests and callers import them from here
    LPIPS_ALEX_CHECKPOINT,
    LpipsAlexMetric,
    PerceptualMetric,
    PerceptualMetricName,
    ShiftTolerantLpipsAlexMetric,
    lpips_alex_backbone_available,
    lpips_alex_backbone_path,
)
from cachesearch.evaluate._pixel import check_pair, psnr, ssim

__all__ = ["get_perceptual_metric", "quality_report"]

logger = logging.getLogger(__name__)


_METRICS: dict[PerceptualMetricName, type[PerceptualMetric]] = {
    PerceptualMetricName.LPIPS_ALEX: LpipsAlexMetric,
    PerceptualMetricName.STLPIPS_ALEX: ShiftTolerantLpipsAlexMetric,
}


def get_perceptual_metric(
    prefer: PerceptualMetricName | str = PerceptualMetricName.LPIPS_ALEX,
    device: torch.device | str = "cpu",
    *,
    lpips_backbone_available: Callable[[], bool] | None = None,
    min_size: int = 64,
) -> PerceptualMetric:
    """Build the preferred perceptual metric if it can be used offline, else the other one (with a warning).

    Args:
        prefer: ``"lpips-alex"`` (default) or ``"stlpips-alex"``.
        device: Device to run the network on.
        lpips_backbone_available: Check whether LPIPS-alex can be built without a download; defaults to
            :func:`lpips_alex_backbone_available`. Injectable for tests.
        min_size: See :class:`PerceptualMetric`.

    Returns:
        The metric; its ``name`` says which one it is and must be recorded with every result.

    Raises:
        ValueError: ``prefer`` is not a known metric name.
        PerceptualMetricUnavailableError: neither metric can be built; the message says what to install.
    """
    try:
        preferred = PerceptualMetricName(prefer)
    except ValueError as e:
        names = ", ".join(repr(m.value) for m in PerceptualMetricName)
        raise ValueError(f"unknown perceptual metric {prefer!r}; expected one of {names}") from e
    available = lpips_alex_backbone_available if lpips_backbone_available is None else lpips_backbone_available
    order = [preferred] + [m for m in PerceptualMetricName if m is not preferred]
    reasons: list[str] = []
    for candidate in order:
        if candidate is PerceptualMetricName.LPIPS_ALEX and not available():
            reasons.append(
                f"lpips-alex: needs the lpips package and torchvision's AlexNet checkpoint "
                f"{lpips_alex_backbone_path()} (run torchvision.models.alexnet(weights='IMAGENET1K_V1') "
                "once on a machine with network access and copy the file there)"
            )
            continue
        try:
            metric = _METRICS[candidate](device=device, min_size=min_size)
        except PerceptualMetricUnavailableError as e:
            reasons.append(f"{candidate.value}: {e}")
            continue
        if candidate is not preferred:
            logger.warning(
                "perceptual metric %r is unavailable offline (%s); using %r instead. Record the metric name: "
                "its values are not comparable with %r.",
                preferred.value,
                "; ".join(reasons),
                metric.name,
                preferred.value,
            )
        return metric
    raise PerceptualMetricUnavailableError(
        "no perceptual metric with real pretrained weights is available offline. "
        "Install stlpips-pytorch==0.0.2 (pip install 'cachesearch[search]'), or provide LPIPS-alex's "
        "backbone. Details: " + "; ".join(reasons)
    )


def quality_report(images: torch.Tensor, references: torch.Tensor, metric: PerceptualMetric) -> dict[str, Any]:
    """Mean quality of candidate images against their references.

    Returns:
        ``{"perceptual_metric": metric.name, "perceptual": mean distance, "psnr": mean dB, "ssim": mean,
        "num_images": N}`` with plain Python floats. ``psnr`` is ``inf`` when any image equals its reference.

    Raises:
        InvalidOutputError: some candidate images contain NaN or inf (checked before any metric runs).
    """
    if not isinstance(metric, PerceptualMetric):
        raise TypeError(f"metric must be a PerceptualMetric, got {type(metric).__name__}")
    check_pair(images, references)
    return {
        "perceptual_metric": metric.name,
        "perceptual": float(metric(images, references).double().mean()),
        "psnr": float(psnr(images, references).mean()),
        "ssim": float(ssim(images, references).mean()),
        "num_images": int(images.shape[0]),
    }
