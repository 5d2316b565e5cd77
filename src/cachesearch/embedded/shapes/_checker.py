"""Deterministic attribute checker for ``shapes`` images: background color, shape color and shape class.

Each pixel is mapped to its nearest palette color. The background is the most frequent label on the image
border; the shape color is the most frequent label among the other pixels. The shape is the largest 4-connected region
of non-background pixels; it is classified by IoU against each shape's template mask (the renderer's own mask
function) stretched to the region's bounding box. Ground-truth renders match their template exactly (IoU 1).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ._data import COLORS, PALETTE, SHAPES, Caption, parse_caption, shape_mask

__all__ = ["CheckResult", "check", "to_uint8"]

_PALETTE_ARR = np.array([PALETTE[c] for c in COLORS], dtype=np.float64)  # (10, 3)


@dataclass(frozen=True)
class CheckResult:
    """Outcome of :func:`check` for one image."""

    expected: Caption
    predicted_bg: str
    predicted_fg: str | None
    predicted_shape: str | None
    shape_scores: tuple[tuple[str, float], ...]

    @property
    def bg_ok(self) -> bool:
        """Background color matches the caption."""
        return self.predicted_bg == self.expected.bg

    @property
    def fg_ok(self) -> bool:
        """Shape color matches the caption."""
        return self.predicted_fg == self.expected.fg

    @property
    def shape_ok(self) -> bool:
        """Shape class matches the caption."""
        return self.predicted_shape == self.expected.shape

    @property
    def colors_ok(self) -> bool:
        """Both colors match."""
        return self.bg_ok and self.fg_ok

    @property
    def all_ok(self) -> bool:
        """Both colors and the shape match."""
        return self.colors_ok and self.shape_ok


def to_uint8(image: object) -> np.ndarray:
    """Convert an image to uint8 (H, W, 3).

    Accepts a uint8 array (H, W, 3), a float array/tensor with values in [0, 1] shaped (H, W, 3) or (3, H, W),
    or a PIL image. Raises ``TypeError``/``ValueError`` for anything else.
    """
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL.Image
        image = np.asarray(image.convert("RGB"))
    if hasattr(image, "detach"):  # torch.Tensor
        image = image.detach().to("cpu").float().numpy()
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy array, torch tensor or PIL image, got {type(image).__name__}")
    arr = image
    if arr.ndim != 3:
        raise ValueError(f"expected a 3-D image (H, W, 3) or (3, H, W), got shape {arr.shape}")
    if arr.shape[-1] != 3 and arr.shape[0] == 3:
        arr = np.moveaxis(arr, 0, -1)
    if arr.shape[-1] != 3:
        raise ValueError(f"expected 3 color channels, got shape {image.shape}")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"expected uint8 or float pixels, got {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("image contains NaN or inf")
    return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def palette_labels(image: np.ndarray) -> np.ndarray:
    """Index (into ``COLORS``) of the nearest palette color of every pixel of a uint8 (H, W, 3) image."""
    d = ((image.astype(np.float64)[:, :, None, :] - _PALETTE_ARR[None, None]) ** 2).sum(-1)
    return d.argmin(-1)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """Largest 4-connected component of a boolean mask (first found wins ties)."""
    h, w = mask.shape
    seen = np.zeros_like(mask)
    best: list[tuple[int, int]] = []
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if seen[y0, x0]:
            continue
        comp = []
        q = deque([(int(y0), int(x0))])
        seen[y0, x0] = True
        while q:
            y, x = q.popleft()
            comp.append((y, x))
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    q.append((ny, nx))
        if len(comp) > len(best):
            best = comp
    out = np.zeros_like(mask)
    if best:
        ys, xs = zip(*best, strict=True)
        out[list(ys), list(xs)] = True
    return out


def classify_shape(mask: np.ndarray) -> tuple[str | None, tuple[tuple[str, float], ...]]:
    """Classify the largest region of a boolean mask; returns (shape or None, IoU per shape)."""
    region = _largest_component(mask)
    if not region.any():
        return None, ()
    ys, xs = np.nonzero(region)
    crop = region[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = crop.shape
    scores = []
    for shape in SHAPES:
        tmpl = shape_mask(shape, h, w)
        scores.append((shape, float((tmpl & crop).sum() / (tmpl | crop).sum())))
    best = max(scores, key=lambda s: s[1])[0]
    return best, tuple(scores)


def check(image: object, caption: str | Caption) -> CheckResult:
    """Check one image against its caption (see module docstring for the method).

    Args:
        image: uint8 (H, W, 3) array, float array/tensor in [0, 1] ((H, W, 3) or (3, H, W)), or PIL image.
        caption: caption string ``a {color} {shape} on a {color} background`` or a parsed :class:`Caption`.
    """
    expected = caption if isinstance(caption, Caption) else parse_caption(caption)
    img = to_uint8(image)
    labels = palette_labels(img)
    border = np.concatenate([labels[0], labels[-1], labels[1:-1, 0], labels[1:-1, -1]])
    bg = int(np.bincount(border, minlength=len(COLORS)).argmax())
    inner = labels[labels != bg]
    if inner.size == 0:
        return CheckResult(expected, COLORS[bg], None, None, ())
    fg = int(np.bincount(inner, minlength=len(COLORS)).argmax())
    shape, scores = classify_shape(labels != bg)
    return CheckResult(expected, COLORS[bg], COLORS[fg], shape, scores)
