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
    60-line re-implementation of the package's network below. The package's own module is not imported: it
    imports IPython and torchsummary at module level without declaring them (about 54 MB of extra installs
    for two unused imports), and loads its weights with ``strict=False``. A test checks that the two
    implementations agree to float precision.

Alternatives considered and rejected (all are small wheels that ship no trunk weights): ``piq`` and ``piqa``
download LPIPS/DISTS weights at run time; ``DISTS_pytorch`` ships its alpha/beta but needs torchvision's
VGG16 download; ``IQA_pytorch`` and ``MR_perceptual`` likewise build on torchvision downloads; ``pyiqa`` and
``dreamsim`` download from hubs; ``lpips(pnet_rand=True)`` has a random trunk and is not a metric.

The two metrics are different functions with different scales: a study, its results and its YAML files
record ``PerceptualMetric.name`` and values under different names must not be compared.

Small images
------------
Both trunks have a minimum input size (AlexNet/LPIPS: 31 px; shift-tolerant AlexNet: 21 px). Both sets of
linear heads were calibrated on the 64x64 patches of the BAPPS dataset, so by default images whose shorter
side is under ``min_size=64`` px are bilinearly upsampled (aspect ratio kept) before the trunk. Candidate
and reference are resized identically, so identical inputs stay identical.

Heavy imports (lpips/torchvision, scikit-image) happen inside functions; importing this module is cheap.
"""

from __future__ import annotations

import abc
import enum
import hashlib
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from cachesearch.evaluate._errors import InvalidOutputError, PerceptualMetricUnavailableError
from cachesearch.evaluate._stlpips_net import ShiftTolerantLpips

__all__ = [
    "LPIPS_ALEX_CHECKPOINT",
    "LpipsAlexMetric",
    "PerceptualMetric",
    "PerceptualMetricName",
    "ShiftTolerantLpipsAlexMetric",
    "get_perceptual_metric",
    "lpips_alex_backbone_available",
    "lpips_alex_backbone_path",
    "psnr",
    "quality_report",
    "ssim",
]

logger = logging.getLogger(__name__)

#: File name of torchvision's ImageNet AlexNet checkpoint (basename of ``AlexNet_Weights.IMAGENET1K_V1.url``).
LPIPS_ALEX_CHECKPOINT = "alexnet-owt-7be5be79.pth"

_STLPIPS_PACKAGE = "stlpips_pytorch"
_STLPIPS_WEIGHTS = ("weights", "vST0.0", "alex_shift_tolerant.pth")
#: sha256 of ``alex_shift_tolerant.pth`` as released in stlpips-pytorch 0.0.2.
_STLPIPS_ALEX_SHA256 = "b356b382f96010f77d085ee8343ecd9fd322d0a56e8de2b2d0549fafcad8b9ee"


class PerceptualMetricName(str, enum.Enum):
    """Stable names of the perceptual metrics; results and YAML files store the value."""

    LPIPS_ALEX = "lpips-alex"
    STLPIPS_ALEX = "stlpips-alex"


# ---------------------------------------------------------------------------------------------- validation


def _check_pair(images: torch.Tensor, references: torch.Tensor) -> None:
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


# -------------------------------------------------------------------------------------- perceptual metrics


class PerceptualMetric(abc.ABC):
    """A learned perceptual distance of candidate images to references (lower is closer; 0 when identical).

    Call it with two float tensors, NCHW, values in [0, 1] (converted to [-1, 1] internally, as LPIPS
    expects), 1 or 3 channels (grey is repeated to RGB); it returns a float32 CPU tensor of shape [N] with one
    distance per image pair. Images whose shorter side is under ``min_size`` are upsampled first (see the
    module docstring).
    """

    #: Stable name stored in results and YAML files.
    name: ClassVar[str]
    #: Smallest input side the trunk accepts (measured; smaller inputs make a pooling or padding layer fail).
    backbone_min_size: ClassVar[int]

    def __init__(self, *, device: torch.device | str = "cpu", min_size: int = 64, batch_size: int = 32) -> None:
        if isinstance(min_size, bool) or not isinstance(min_size, int):
            raise TypeError(f"min_size must be an int, got {min_size!r}")
        if min_size < self.backbone_min_size:
            raise ValueError(f"min_size must be >= {self.backbone_min_size} for {self.name}, got {min_size}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self._device = torch.device(device)
        self._min_size = min_size
        self._batch_size = batch_size

    @property
    def device(self) -> torch.device:
        """Device the network runs on."""
        return self._device

    @property
    def min_size(self) -> int:
        """Shorter image side below which inputs are bilinearly upsampled before the trunk."""
        return self._min_size

    @abc.abstractmethod
    def _distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-pair distances [N] for float32 inputs in [-1, 1] on ``self.device``, sides >= ``min_size``."""

    def _resize(self, t: torch.Tensor) -> torch.Tensor:
        h, w = t.shape[-2:]
        short = min(h, w)
        if short >= self._min_size:
            return t
        scale = self._min_size / short
        size = (max(self._min_size, math.ceil(h * scale)), max(self._min_size, math.ceil(w * scale)))
        return F.interpolate(t, size=size, mode="bilinear", align_corners=False)

    def __call__(self, images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        """Per-image distances, shape [N], float32 on CPU. Raises InvalidOutputError on NaN/inf candidates."""
        _check_pair(images, references)
        out = torch.empty(images.shape[0], dtype=torch.float32)
        with torch.inference_mode():
            for start in range(0, images.shape[0], self._batch_size):
                x = images[start : start + self._batch_size].to(self._device, torch.float32)
                y = references[start : start + self._batch_size].to(self._device, torch.float32)
                if x.shape[1] == 1:
                    x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
                d = self._distance(self._resize(x) * 2 - 1, self._resize(y) * 2 - 1).float().cpu()
                # Identical pairs are exactly 0 by definition; make that independent of kernel determinism.
                same = (x == y).flatten(1).all(dim=1).cpu()
                out[start : start + x.shape[0]] = torch.where(same, torch.zeros_like(d), d)
        return out

    def __repr__(self) -> str:
        cls = type(self).__name__
        return f"{cls}(name={self.name!r}, device={str(self._device)!r}, min_size={self._min_size})"


def lpips_alex_backbone_path() -> Path:
    """Where torchvision keeps (or would download) the ImageNet AlexNet checkpoint that LPIPS-alex needs."""
    return Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_ALEX_CHECKPOINT


def lpips_alex_backbone_available() -> bool:
    """True when the ``lpips`` package is installed and torchvision's AlexNet checkpoint is already cached.

    Looks at files only; never imports torchvision or touches the network.
    """
    import importlib.util

    return importlib.util.find_spec("lpips") is not None and lpips_alex_backbone_path().is_file()


class LpipsAlexMetric(PerceptualMetric):
    """LPIPS v0.1, AlexNet trunk (``lpips`` package), built only from files already on disk.

    Raises PerceptualMetricUnavailableError if the package or torchvision's AlexNet checkpoint is missing,
    rather than letting torchvision attempt a download.
    """

    name = PerceptualMetricName.LPIPS_ALEX.value
    backbone_min_size = 31

    def __init__(self, *, device: torch.device | str = "cpu", min_size: int = 64, batch_size: int = 32) -> None:
        super().__init__(device=device, min_size=min_size, batch_size=batch_size)
        if not lpips_alex_backbone_available():
            raise PerceptualMetricUnavailableError(
                f"lpips-alex needs the lpips package and torchvision's AlexNet checkpoint at "
                f"{lpips_alex_backbone_path()} (not found; it is not downloaded here)"
            )
        import warnings

        import lpips

        try:
            with warnings.catch_warnings():
                # lpips 0.1.4 calls torchvision's deprecated ``alexnet(pretrained=True)``; the file is cached.
                warnings.simplefilter("ignore", UserWarning)
                model = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=False, verbose=False)
        except Exception as e:  # a truncated or foreign checkpoint: report it as unusable, with the cause
            raise PerceptualMetricUnavailableError(
                f"lpips-alex could not be built from {lpips_alex_backbone_path()}: {type(e).__name__}: {e}"
            ) from e
        self._model = model.eval().requires_grad_(False).to(self._device)

    @property
    def model(self) -> nn.Module:
        """The wrapped ``lpips.LPIPS`` module."""
        return self._model

    def _distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._model(x, y, normalize=False).flatten()


def _stlpips_weights_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec(_STLPIPS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PerceptualMetricUnavailableError(
            "stlpips-alex needs the stlpips-pytorch package for its weights: pip install 'stlpips-pytorch==0.0.2'"
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*_STLPIPS_WEIGHTS)
    if not path.is_file():
        raise PerceptualMetricUnavailableError(f"stlpips-pytorch is installed but {path} is missing; reinstall it")
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ShiftTolerantLpipsAlexMetric(PerceptualMetric):
    """Shift-tolerant LPIPS, AlexNet trunk, with the trained weights shipped in ``stlpips-pytorch`` 0.0.2.

    The weights file is checked against its released sha256 and loaded with ``strict=True``: every parameter
    and buffer comes from the file, none keeps its initial value.
    """

    name = PerceptualMetricName.STLPIPS_ALEX.value
    backbone_min_size = 21

    def __init__(self, *, device: torch.device | str = "cpu", min_size: int = 64, batch_size: int = 32) -> None:
        super().__init__(device=device, min_size=min_size, batch_size=batch_size)
        path = _stlpips_weights_path()
        digest = _sha256(path)
        if digest != _STLPIPS_ALEX_SHA256:
            raise PerceptualMetricUnavailableError(
                f"{path} has sha256 {digest}, expected {_STLPIPS_ALEX_SHA256} (stlpips-pytorch 0.0.2); "
                "install stlpips-pytorch==0.0.2"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = ShiftTolerantLpips()
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise PerceptualMetricUnavailableError(f"{path} does not match the shift-tolerant AlexNet LPIPS") from e
        self._weights_path = path
        self._model = model.eval().requires_grad_(False).to(self._device)

    @property
    def weights_path(self) -> Path:
        """The packaged weights file the network was loaded from."""
        return self._weights_path

    @property
    def weights_sha256(self) -> str:
        """sha256 of the weights file (verified at construction)."""
        return _STLPIPS_ALEX_SHA256

    @property
    def model(self) -> nn.Module:
        """The loaded network (inputs in [-1, 1])."""
        return self._model

    def _distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._model(x, y)


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


# -------------------------------------------------------------------------------------------- PSNR and SSIM


def psnr(images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image (data range 1), float64 CPU tensor [N]; inf if identical."""
    _check_pair(images, references)
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
    _check_pair(images, references)
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
    _check_pair(images, references)
    return {
        "perceptual_metric": metric.name,
        "perceptual": float(metric(images, references).double().mean()),
        "psnr": float(psnr(images, references).mean()),
        "ssim": float(ssim(images, references).mean()),
        "num_images": int(images.shape[0]),
    }
