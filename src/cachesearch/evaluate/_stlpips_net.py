"""The shift-tolerant LPIPS network (AlexNet trunk with blur-pooling, linear heads) that the weights shipped in
``stlpips-pytorch`` load into strictly; our own copy because the package's module imports IPython/torchsummary
at import time and loads non-strictly (see :mod:`cachesearch.evaluate._quality`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ShiftTolerantLpips"]

_LPIPS_EPS = 1e-10  # as in lpips.normalize_tensor


class _BlurPool(nn.Module):
    """Anti-aliased stride-2 downsampling (stlpips ``Downsample``: filter 3, reflect padding 2 per side)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("filt", torch.empty(channels, 1, 3, 3))  # loaded from the weights file

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), self.filt, stride=2, groups=x.shape[1])


class _ScalingLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.empty(1, 3, 1, 1))
        self.register_buffer("scale", torch.empty(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


class _ShiftTolerantAlexTrunk(nn.Module):
    """stlpips ``invariant_networks.alexnet(variant="shift_tolerant", filter_size=3)``, same module names."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[list[tuple[int, nn.Module]]] = [
            [(0, nn.Conv2d(3, 64, 11, stride=1, padding=2)), (1, _BlurPool(64)), (2, nn.ReLU())],
            [
                (3, nn.MaxPool2d(3, stride=1)),
                (4, _BlurPool(64)),
                (5, nn.Conv2d(64, 192, 5, padding=2)),
                (6, nn.ReLU()),
            ],
            [
                (7, nn.MaxPool2d(3, stride=1)),
                (8, _BlurPool(192)),
                (9, nn.Conv2d(192, 384, 3, padding=1)),
                (10, nn.ReLU()),
            ],
            [(11, nn.Conv2d(384, 256, 3, padding=1)), (12, nn.ReLU())],
            [(13, nn.Conv2d(256, 256, 3, padding=1)), (14, nn.ReLU())],
        ]
        for i, group in enumerate(layers, start=1):
            seq = nn.Sequential()
            for index, module in group:
                seq.add_module(str(index), module)
            self.add_module(f"slice{i}", seq)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i in range(1, 6):
            x = getattr(self, f"slice{i}")(x)
            feats.append(x)
        return feats


class _NetLin(nn.Module):
    """LPIPS 1x1 linear head; ``model.0`` is a Dropout in the original (identity in eval mode)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, 1, bias=False))


class ShiftTolerantLpips(nn.Module):
    """Shift-tolerant LPIPS (AlexNet trunk), key-for-key compatible with ``alex_shift_tolerant.pth``."""

    channels = (64, 192, 384, 256, 256)

    def __init__(self) -> None:
        super().__init__()
        self.scaling_layer = _ScalingLayer()
        self.net = _ShiftTolerantAlexTrunk()
        for k, c in enumerate(self.channels):
            self.add_module(f"lin{k}", _NetLin(c))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.compare(self.features(x), self.features(y))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The trunk's five feature maps of ``x`` (in [-1, 1]), each unit-normalised over channels."""
        return [f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + _LPIPS_EPS) for f in self.net(self.scaling_layer(x))]

    def compare(self, fx: list[torch.Tensor], fy: list[torch.Tensor]) -> torch.Tensor:
        """Per-pair distances [N] from two inputs' :meth:`features`."""
        total = torch.zeros(fx[0].shape[0], device=fx[0].device, dtype=fx[0].dtype)
        for k, (a, b) in enumerate(zip(fx, fy, strict=True)):
            total = total + getattr(self, f"lin{k}").model((a - b) ** 2).mean(dim=(1, 2, 3))
        return total
