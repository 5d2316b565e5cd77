"""The perceptual metrics: LPIPS v0.1 (AlexNet trunk) and shift-tolerant LPIPS, built only from files already on
disk (why these two, and why not others: :mod:`._quality`).

Small images
------------
Both trunks have a minimum input size (AlexNet/LPIPS: 31 px; shift-tolerant AlexNet: 21 px). Both sets of
linear heads were calibrated on the 64x64 patches of the BAPPS dataset, so by default images whose shorter
side is under ``min_size=64`` px are bilinearly upsampled (aspect ratio kept) before the trunk. Candidate
and reference are resized identically, so identical inputs stay identical.

Reference features
------------------
A search scores every candidate against the same few reference batches, so a metric whose trunk runs on each
input separately (shift-tolerant LPIPS) keeps the normalised features of the last reference batches it saw,
keyed by their content: the trunk runs once per candidate batch instead of twice. The distances are
bit-identical to recomputing them (the same kernels on the same tensors).

lpips and torchvision are imported when a metric is built; importing this module is cheap.
"""

from __future__ import annotations

import abc
import enum
import hashlib
import math
from collections import OrderedDict
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from cachesearch.evaluate._errors import PerceptualMetricUnavailableError
from cachesearch.evaluate._pixel import check_pair
from cachesearch.evaluate._stlpips_net import ShiftTolerantLpips

__all__ = [
    "LPIPS_ALEX_CHECKPOINT",
    "LpipsAlexMetric",
    "PerceptualMetric",
    "PerceptualMetricName",
    "ShiftTolerantLpipsAlexMetric",
    "lpips_alex_backbone_available",
    "lpips_alex_backbone_path",
]

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
        self._reference_cache: OrderedDict[str, Any] = OrderedDict()

    @property
    def device(self) -> torch.device:
        """Device the network runs on."""
        return self._device

    @property
    def min_size(self) -> int:
        """Shorter image side below which inputs are bilinearly upsampled before the trunk."""
        return self._min_size

    #: Reference batches whose features are kept (a search scores against a few: train, its screening ranges),
    #: and the most bytes they may hold together (on the metric's device; large images are simply not kept).
    reference_cache_size: ClassVar[int] = 16
    reference_cache_bytes: ClassVar[int] = 256 * 2**20

    @abc.abstractmethod
    def _distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-pair distances [N] for float32 inputs in [-1, 1] on ``self.device``, sides >= ``min_size``."""

    def _features(self, y: torch.Tensor) -> Any | None:
        """What :meth:`_compare` needs of the inputs ``y`` (as for :meth:`_distance`): a list of tensors, or ``None``
        where the metric cannot split (then every call runs :meth:`_distance`)."""
        return None

    def _compare(self, x: torch.Tensor, features: Any) -> torch.Tensor:
        """Per-pair distances [N] of ``x`` to the inputs whose :meth:`_features` are ``features``; equal to
        ``_distance(x, y)`` bit for bit."""
        raise NotImplementedError

    def _reference_distance(self, x: torch.Tensor, y: torch.Tensor, y_host: torch.Tensor) -> torch.Tensor:
        """``_distance(x, y)``, with ``y``'s features looked up by the content of ``y_host`` (its CPU copy)."""
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{tuple(y_host.shape)}{y_host.dtype}".encode())
        h.update(y_host.detach().contiguous().cpu().view(torch.uint8).numpy().tobytes())
        key = h.hexdigest()
        features = self._reference_cache.get(key)
        if features is None:
            features = self._features(y)
            if features is None:
                return self._distance(x, y)
            self._reference_cache[key] = features
            while self._reference_cache and (len(self._reference_cache) > self.reference_cache_size or sum(
                    t.numel() * t.element_size() for f in self._reference_cache.values() for t in f)
                    > self.reference_cache_bytes):
                self._reference_cache.popitem(last=False)
        else:
            self._reference_cache.move_to_end(key)
        return self._compare(x, features)

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
        check_pair(images, references)
        out = torch.empty(images.shape[0], dtype=torch.float32)
        with torch.inference_mode():
            for start in range(0, images.shape[0], self._batch_size):
                x = images[start : start + self._batch_size].to(self._device, torch.float32)
                y_host = references[start : start + self._batch_size]
                y = y_host.to(self._device, torch.float32)
                if x.shape[1] == 1:
                    x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
                d = self._reference_distance(self._resize(x) * 2 - 1, self._resize(y) * 2 - 1, y_host).float().cpu()
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

    def _features(self, y: torch.Tensor) -> list[torch.Tensor]:
        return self._model.features(y)

    def _compare(self, x: torch.Tensor, features: Any) -> torch.Tensor:
        return self._model.compare(self._model.features(x), features)
