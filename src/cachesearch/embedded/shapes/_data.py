"""Procedural data for the embedded ``shapes`` model: palette, shapes, captions and renderer.

Every image is one flat-colored shape (circle, square, triangle or cross) on a flat background of another
palette color. Rendering is exact (pixel-center sampling, no anti-aliasing), so the checker can recover the
ground truth of every render; the same mask functions serve as the checker's shape templates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 25, 75),
    "green": (60, 180, 75),
    "blue": (0, 130, 200),
    "yellow": (255, 225, 25),
    "orange": (245, 130, 48),
    "purple": (145, 30, 180),
    "cyan": (70, 240, 240),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
}
"""Color name -> RGB (uint8 values)."""

COLORS: tuple[str, ...] = tuple(PALETTE)
"""Color names in palette order."""

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
"""Shape names."""

DEFAULT_SIZE = 32
"""Default image resolution (pixels, square)."""

MARGIN = 2
"""Minimum number of background pixels between the shape and the image border."""

TRAIN_STREAM = 0
"""Data-stream id of training renders: ``np.random.default_rng([seed, TRAIN_STREAM, phase])``."""

EVAL_STREAM = 1
"""Data-stream id of evaluation prompts: ``np.random.default_rng([seed, EVAL_STREAM])`` (never in training)."""

EVAL_SEED_BASE = 1_000_000
"""Generator seeds for evaluation images start here (training draws its noise from one seeded generator)."""

_CAPTION_RE = re.compile(r"^a (?P<fg>[a-z]+) (?P<shape>[a-z]+) on a (?P<bg>[a-z]+) background$")


@dataclass(frozen=True)
class Caption:
    """A parsed caption: shape, shape color and background color."""

    shape: str
    fg: str
    bg: str

    def text(self) -> str:
        """Return the caption string ``a {fg} {shape} on a {bg} background``."""
        return caption(self.shape, self.fg, self.bg)


def _validate(shape: str, fg: str, bg: str) -> None:
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    for role, color in (("fg", fg), ("bg", bg)):
        if color not in PALETTE:
            raise ValueError(f"unknown {role} color {color!r}; expected one of {COLORS}")
    if fg == bg:
        raise ValueError(f"shape color and background color must differ, got {fg!r} for both")


def caption(shape: str, fg: str, bg: str) -> str:
    """Return the caption ``a {fg} {shape} on a {bg} background`` (validated)."""
    _validate(shape, fg, bg)
    return f"a {fg} {shape} on a {bg} background"


def parse_caption(text: str) -> Caption:
    """Parse a caption of the exact form ``a {color} {shape} on a {color} background``.

    Raises:
        ValueError: if the text does not have that form or names an unknown shape/color.
    """
    m = _CAPTION_RE.match(text.strip())
    if m is None:
        raise ValueError(
            f"not a shapes caption: {text!r}; expected 'a {{color}} {{shape}} on a {{color}} background'"
        )
    shape, fg, bg = m["shape"], m["fg"], m["bg"]
    _validate(shape, fg, bg)
    return Caption(shape=shape, fg=fg, bg=bg)


def all_captions() -> list[Caption]:
    """Every valid (shape, fg, bg) combination, in a fixed order (4 x 10 x 9 = 360)."""
    return [Caption(s, f, b) for s in SHAPES for f in COLORS for b in COLORS if f != b]


def random_caption(rng: np.random.Generator) -> str:
    """Draw a uniformly random caption (shape, fg != bg) from ``rng``."""
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    fg_i = int(rng.integers(len(COLORS)))
    bg_i = int(rng.integers(len(COLORS) - 1))
    if bg_i >= fg_i:
        bg_i += 1
    return caption(shape, COLORS[fg_i], COLORS[bg_i])


def shape_mask(shape: str, h: int, w: int) -> np.ndarray:
    """Boolean mask (h, w) of ``shape`` filling an h x w bounding box exactly (every row/column touched).

    Used both to render (h == w) and as the checker's templates (any h, w).
    """
    if h < 1 or w < 1:
        raise ValueError(f"mask size must be positive, got {h}x{w}")
    y = np.arange(h, dtype=np.float64)[:, None] + 0.5
    x = np.arange(w, dtype=np.float64)[None, :] + 0.5
    if shape == "square":
        return np.ones((h, w), dtype=bool)
    if shape == "circle":
        m = ((x - w / 2) / (w / 2)) ** 2 + ((y - h / 2) / (h / 2)) ** 2 <= 1.0
    elif shape == "triangle":
        # apex at the top center, base = full bottom row
        m = np.abs(x - w / 2) <= (y + 0.5) / h * (w / 2)
    elif shape == "cross":
        tw, th = max(1, round(w / 3)), max(1, round(h / 3))
        m = (np.abs(x - w / 2) <= tw / 2) | (np.abs(y - h / 2) <= th / 2)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    return np.broadcast_to(m, (h, w)).copy()


def size_range(size: int) -> tuple[int, int]:
    """Inclusive (min, max) shape side length for an image of ``size`` pixels."""
    lo = max(6, round(size * 0.3))
    hi = size - 2 * MARGIN - max(1, size // 16)
    if lo > hi:
        raise ValueError(f"image size {size} is too small for shapes")
    return lo, hi


def render(
    shape: str,
    fg: str,
    bg: str,
    *,
    size: int = DEFAULT_SIZE,
    rng: np.random.Generator | None = None,
    seed: int | None = None,
) -> np.ndarray:
    """Render one shape on a plain background as a uint8 array (size, size, 3).

    Side length and position are drawn from ``rng`` (or ``np.random.default_rng(seed)``); the shape always
    lies fully inside the image with at least ``MARGIN`` background pixels to each border. Deterministic given
    the seed.
    """
    _validate(shape, fg, bg)
    if (rng is None) == (seed is None):
        raise ValueError("pass exactly one of rng= or seed=")
    if rng is None:
        rng = np.random.default_rng(seed)
    lo, hi = size_range(size)
    s = int(rng.integers(lo, hi + 1))
    x0 = int(rng.integers(MARGIN, size - MARGIN - s + 1))
    y0 = int(rng.integers(MARGIN, size - MARGIN - s + 1))
    img = np.empty((size, size, 3), dtype=np.uint8)
    img[:] = PALETTE[bg]
    img[y0 : y0 + s, x0 : x0 + s][shape_mask(shape, s, s)] = PALETTE[fg]
    return img


def sample(rng: np.random.Generator, *, size: int = DEFAULT_SIZE) -> tuple[np.ndarray, str]:
    """Draw one random (image, caption) pair from ``rng``."""
    text = random_caption(rng)
    c = parse_caption(text)
    return render(c.shape, c.fg, c.bg, size=size, rng=rng), text


def make_dataset(n: int, *, seed: int, size: int = DEFAULT_SIZE) -> tuple[np.ndarray, list[str]]:
    """Render ``n`` random pairs: images uint8 (n, size, size, 3) and captions; deterministic in ``seed``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    texts: list[str] = []
    for i in range(n):
        images[i], t = sample(rng, size=size)
        texts.append(t)
    return images, texts


def to_model_input(imgs: np.ndarray) -> torch.Tensor:
    """uint8 images (n, H, W, 3) as an autoencoder's input: float (n, 3, H, W) in [-1, 1], contiguous."""
    import torch

    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()
