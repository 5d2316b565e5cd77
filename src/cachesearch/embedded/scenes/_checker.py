"""Deterministic attribute checker for ``scenes`` images: background color, both object colors and shapes.

Pixels are mapped to their nearest palette color (textures and gradients never change it, see ``_data``). The
background is the most frequent label on the border; the two object colors are the two most frequent other
labels (each at least ``MIN_PIXELS``); each object's shape is its label's largest 4-connected region classified
by IoU against the renderer's masks, as in ``shapes``. Ground-truth renders are recovered exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..shapes._checker import classify_shape, palette_labels, to_uint8
from ..shapes._data import COLORS
from ._data import SceneCaption, parse_caption

__all__ = ["MIN_PIXELS", "SceneCheck", "check"]

MIN_PIXELS = 24
"""Pixels a label needs to count as an object (the smallest object has 16 x 16 / 5 > 50)."""


@dataclass(frozen=True)
class SceneCheck:
    """Outcome of :func:`check` for one image."""

    expected: SceneCaption
    predicted_bg: str
    predicted_colors: tuple[str, ...]
    predicted_shapes: dict[str, str | None]

    @property
    def bg_ok(self) -> bool:
        """Background color matches."""
        return self.predicted_bg == self.expected.bg

    @property
    def fg_ok(self) -> bool:
        """The two object colors are exactly the caption's two."""
        return set(self.predicted_colors) == {self.expected.c1, self.expected.c2}

    @property
    def colors_ok(self) -> bool:
        """Background and both object colors match."""
        return self.bg_ok and self.fg_ok

    @property
    def shape_ok(self) -> bool:
        """Both objects have the caption's shape."""
        e = self.expected
        return self.predicted_shapes.get(e.c1) == e.s1 and self.predicted_shapes.get(e.c2) == e.s2

    @property
    def all_ok(self) -> bool:
        """Colors and shapes all match."""
        return self.colors_ok and self.shape_ok


def check(image: object, caption: str | SceneCaption) -> SceneCheck:
    """Check one image (uint8 HWC, float [0, 1] HWC/CHW, tensor or PIL) against its scenes caption."""
    expected = caption if isinstance(caption, SceneCaption) else parse_caption(caption)
    labels = palette_labels(to_uint8(image))
    border = np.concatenate([labels[0], labels[-1], labels[1:-1, 0], labels[1:-1, -1]])
    bg = int(np.bincount(border, minlength=len(COLORS)).argmax())
    counts = np.bincount(labels[labels != bg], minlength=len(COLORS))
    top = [int(i) for i in np.argsort(-counts, kind="stable")[:2] if counts[i] >= MIN_PIXELS]
    colors = tuple(COLORS[i] for i in top)
    shapes = {COLORS[i]: classify_shape(labels == i)[0] for i in top}
    return SceneCheck(expected, COLORS[bg], colors, shapes)
