"""Procedural data for the embedded ``scenes`` model: two textured objects on a gradient background, 64 px.

A scene is two objects (circle, square, triangle or cross, each in its own palette color) on a background of a
third palette color. The caption names the objects and the background; what it leaves open is drawn at random:
sizes, positions, each object's texture (solid, stripes at one of four angles with a random period and phase, or
a checkerboard) and the background's linear gradient (random direction and strength). Textures and gradients
only mix a palette color toward black or white by an amount that keeps every pixel nearest to that palette
color, so :mod:`._checker` recovers the ground truth of every render exactly, as for ``shapes``.

These open choices are what make sampling trajectories curve: the prompt fixes the layout's colors but not its
details, which a sampler decides late and differently with fewer steps (unlike ``shapes``' flat images).
``render(..., textures="coarse", background="clouds")`` draws a variant with wider textures and a multi-scale
random background (:data:`TEXTURE_SCALES`, :data:`BACKGROUNDS`); the defaults are the shipped models' data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import numpy as np

from ..shapes._data import COLORS, PALETTE, SHAPES, shape_mask

__all__ = [
    "DEFAULT_SIZE",
    "EVAL_SEED_BASE",
    "EVAL_STREAM",
    "TRAIN_STREAM",
    "TEXTURES",
    "TEXTURE_SCALES",
    "BACKGROUNDS",
    "SceneCaption",
    "all_captions",
    "clouds",
    "parse_caption",
    "random_caption",
    "render",
    "sample",
]

DEFAULT_SIZE = 64
"""Image resolution (pixels, square)."""

TEXTURES: tuple[str, ...] = ("solid", "stripes", "checker")
"""Object textures (never named in the caption)."""

TEXTURE_SCALES: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "fine": ((4, 8), (3, 5)),
    "coarse": ((8, 16), (4, 8)),
}
"""Texture scales: (stripe period, checker cell) ranges in px, inclusive. ``fine`` is the shipped models' data;
``coarse`` (an experiment, README) is what a 4x-per-side autoencoder carries better."""

BACKGROUNDS: tuple[str, ...] = ("gradient", "clouds")
"""Background shading: a linear ``gradient`` (the shipped models' data), or ``clouds``: that gradient plus a
multi-scale random field (octaves of 2-16 cells per side, amplitude falling with frequency, as in natural images),
so that much of the image is detail the caption leaves open and a sampler decides from coarse to fine."""

_CLOUD_OCTAVES = ((2, 1.0), (4, 0.6), (8, 0.36), (16, 0.22))  # (cells per side, amplitude)

TRAIN_STREAM = 0
"""Data-stream id of training renders: ``np.random.default_rng([seed, TRAIN_STREAM, phase])``."""

EVAL_STREAM = 1
"""Data-stream id of evaluation prompts (never in training)."""

EVAL_SEED_BASE = 1_000_000
"""Generator seeds of evaluation images start here."""

_MIN_SIDE, _MAX_SIDE = 16, 30
_GAP = 2  # background pixels between the objects and to the border
_CAPTION_RE = re.compile(
    r"^a (?P<c1>[a-z]+) (?P<s1>[a-z]+) and a (?P<c2>[a-z]+) (?P<s2>[a-z]+) on a (?P<bg>[a-z]+) background$"
)
_PALETTE_ARR = np.array([PALETTE[c] for c in COLORS], dtype=np.float64)


@dataclass(frozen=True)
class SceneCaption:
    """A parsed scene caption: two (color, shape) objects and the background color."""

    c1: str
    s1: str
    c2: str
    s2: str
    bg: str

    def text(self) -> str:
        """The caption string ``a {c1} {s1} and a {c2} {s2} on a {bg} background``."""
        return f"a {self.c1} {self.s1} and a {self.c2} {self.s2} on a {self.bg} background"

    def validate(self) -> SceneCaption:
        """Return self; raise ``ValueError`` on an unknown word or a repeated color."""
        for s in (self.s1, self.s2):
            if s not in SHAPES:
                raise ValueError(f"unknown shape {s!r}; expected one of {SHAPES}")
        for c in (self.c1, self.c2, self.bg):
            if c not in PALETTE:
                raise ValueError(f"unknown color {c!r}; expected one of {COLORS}")
        if len({self.c1, self.c2, self.bg}) != 3:
            raise ValueError(f"the two object colors and the background must all differ: {self.text()!r}")
        return self


def parse_caption(text: str) -> SceneCaption:
    """Parse ``a {color} {shape} and a {color} {shape} on a {color} background`` (``ValueError`` otherwise)."""
    m = _CAPTION_RE.match(text.strip())
    if m is None:
        raise ValueError(
            f"not a scenes caption: {text!r}; expected 'a {{color}} {{shape}} and a {{color}} {{shape}} on a "
            "{color} background'"
        )
    return SceneCaption(m["c1"], m["s1"], m["c2"], m["s2"], m["bg"]).validate()


def all_captions() -> list[SceneCaption]:
    """Every valid caption in a fixed order (10 x 9 x 8 colors x 16 shape pairs = 11,520)."""
    return [
        SceneCaption(c1, s1, c2, s2, bg)
        for bg in COLORS
        for c1 in COLORS
        for c2 in COLORS
        if len({c1, c2, bg}) == 3
        for s1 in SHAPES
        for s2 in SHAPES
    ]


def random_caption(rng: np.random.Generator) -> str:
    """A uniformly random valid caption drawn from ``rng``."""
    c = rng.choice(len(COLORS), size=3, replace=False)
    s = rng.integers(len(SHAPES), size=2)
    return SceneCaption(COLORS[c[0]], SHAPES[s[0]], COLORS[c[1]], SHAPES[s[1]], COLORS[c[2]]).text()


@cache
def max_mix(color: str, toward: str) -> float:
    """Largest mix (multiple of 0.01, at most 0.35) of ``color`` toward ``"black"``/``"white"`` still nearest it."""
    base = np.array(PALETTE[color], dtype=np.float64)
    target = np.zeros(3) if toward == "black" else np.full(3, 255.0)
    own = COLORS.index(color)
    best = 0.0
    for k in range(1, 36):
        a = k / 100
        mixed = np.round(base + a * (target - base))
        if int(((_PALETTE_ARR - mixed) ** 2).sum(-1).argmin()) != own:
            break
        best = a
    return best


def _shade(color: str, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """(target RGB, usable mix) for shading ``color``: toward black or white, whichever allows more."""
    base = np.array(PALETTE[color], dtype=np.float64)
    options = []
    for name, rgb in (("black", np.zeros(3)), ("white", np.full(3, 255.0))):
        mix = max_mix(color, name)
        if mix * np.linalg.norm(rgb - base) >= 30.0:  # a visible second tone (RGB distance)
            options.append((rgb, mix))
    return options[int(rng.integers(len(options)))] if len(options) > 1 else options[0]


def stripes(s: int, period: int, phase: int, angle: int) -> np.ndarray:
    """Boolean (s, s) stripes of ``period`` px at ``angle`` 0-3 (horizontal, vertical, two diagonals)."""
    y, x = np.mgrid[0:s, 0:s]
    coord = (y, x, x + y, x - y + s)[angle]
    return ((coord + phase) % period) < period // 2


def _texture(kind: str, s: int, rng: np.random.Generator, scale: str = "fine") -> np.ndarray:
    """Boolean (s, s) pattern: True where the object takes its shaded second tone."""
    (p_lo, p_hi), (c_lo, c_hi) = TEXTURE_SCALES[scale]
    if kind == "solid":
        return np.zeros((s, s), dtype=bool)
    if kind == "stripes":
        period = int(rng.integers(p_lo, p_hi + 1))
        phase = int(rng.integers(period))
        return stripes(s, period, phase, int(rng.integers(4)))
    y, x = np.mgrid[0:s, 0:s]
    cell = int(rng.integers(c_lo, c_hi + 1))
    return ((y // cell + x // cell) % 2) == 1


def _upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """Bilinear (size, size) interpolation of a (k + 1, k + 1) grid of values at the cell corners."""
    k = grid.shape[0] - 1
    c = np.linspace(0.0, k, size)
    i = np.minimum(c.astype(int), k - 1)
    f = c - i
    rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def clouds(size: int, rng: np.random.Generator) -> np.ndarray:
    """A (size, size) multi-scale random field in [0, 1] (octaves :data:`_CLOUD_OCTAVES`)."""
    field = sum(a * _upsample(rng.standard_normal((k + 1, k + 1)), size) for k, a in _CLOUD_OCTAVES)
    lo, hi = field.min(), field.max()
    return (field - lo) / (hi - lo)


def _place(rng: np.random.Generator, size: int) -> list[tuple[int, int, int]]:
    """Two non-overlapping (side, x0, y0) boxes inside the image (rejection sampling, deterministic)."""
    for _ in range(1000):
        boxes = []
        for _ in range(2):
            s = int(rng.integers(_MIN_SIDE, _MAX_SIDE + 1))
            x0 = int(rng.integers(_GAP, size - _GAP - s + 1))
            y0 = int(rng.integers(_GAP, size - _GAP - s + 1))
            boxes.append((s, x0, y0))
        (s1, x1, y1), (s2, x2, y2) = boxes
        apart_x = x1 + s1 + _GAP <= x2 or x2 + s2 + _GAP <= x1
        apart_y = y1 + s1 + _GAP <= y2 or y2 + s2 + _GAP <= y1
        if apart_x or apart_y:
            return boxes
    raise RuntimeError("could not place two objects")  # pragma: no cover - 1000 tries never all fail


def render(
    text: str | SceneCaption, *, size: int = DEFAULT_SIZE, rng: np.random.Generator | None = None,
    seed: int | None = None, textures: str = "fine", background: str = "gradient",
) -> np.ndarray:
    """Render one scene for ``text`` as uint8 (size, size, 3); the open choices come from ``rng`` or ``seed``.

    ``textures`` picks the texture scale (:data:`TEXTURE_SCALES`), ``background`` the shading
    (:data:`BACKGROUNDS`).
    """
    cap = text if isinstance(text, SceneCaption) else parse_caption(text)
    if (rng is None) == (seed is None):
        raise ValueError("pass exactly one of rng= or seed=")
    if textures not in TEXTURE_SCALES:
        raise ValueError(f"textures must be one of {sorted(TEXTURE_SCALES)}, got {textures!r}")
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {list(BACKGROUNDS)}, got {background!r}")
    if rng is None:
        rng = np.random.default_rng(seed)
    if size < _MIN_SIDE + _MAX_SIDE + 3 * _GAP:
        raise ValueError(f"scenes need size >= {_MIN_SIDE + _MAX_SIDE + 3 * _GAP}, got {size}")
    bg = np.array(PALETTE[cap.bg], dtype=np.float64)
    target, mix = _shade(cap.bg, rng)
    theta = rng.uniform(0, 2 * np.pi)
    strength = rng.uniform(0.3, 1.0) * mix
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    ramp = (np.cos(theta) * (x - 0.5) + np.sin(theta) * (y - 0.5)) / np.sqrt(0.5) * 0.5 + 0.5  # in [0, 1]
    shade = strength * ramp
    if background == "clouds":  # mix stays <= max_mix, so every pixel keeps its palette label
        shade = 0.3 * shade + 0.7 * mix * clouds(size, rng)
    img = bg + shade[..., None] * (target - bg)
    for (color, shape), (s, x0, y0) in zip(((cap.c1, cap.s1), (cap.c2, cap.s2)), _place(rng, size), strict=True):
        base = np.array(PALETTE[color], dtype=np.float64)
        t_rgb, t_mix = _shade(color, rng)
        kind = TEXTURES[int(rng.integers(len(TEXTURES)))]
        tex = _texture(kind, s, rng, textures)
        second = base + rng.uniform(0.6, 1.0) * t_mix * (t_rgb - base)
        patch = np.where(tex[..., None], second, base)
        m = shape_mask(shape, s, s)
        img[y0 : y0 + s, x0 : x0 + s][m] = patch[m]
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def sample(
    rng: np.random.Generator, *, size: int = DEFAULT_SIZE, textures: str = "fine", background: str = "gradient",
) -> tuple[np.ndarray, str]:
    """One random (image, caption) pair from ``rng`` (``textures``, ``background``: see :func:`render`)."""
    text = random_caption(rng)
    return render(text, size=size, rng=rng, textures=textures, background=background), text
