"""The front as an inline SVG scatter plot: linear x (cost or latency ratio), log y (quality loss), every point
with a ``data-tip`` (the page's script shows it on hover) and a ``data-series`` (the legend hides a series)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["SERIES", "Point", "legend_html", "scatter_svg"]


@dataclass(frozen=True)
class Point:
    """One marker: position, series (a key of :data:`SERIES`) and the hover text (one line per entry)."""

    x: float
    y: float
    series: str
    tip: tuple[str, ...] = ()


SERIES: dict[str, tuple[str, str, str]] = {
    # key: (legend label, shape, colour)
    "trial": ("trials (train)", "dot", "#b8b8b8"),
    "baseline": ("baselines (train)", "diamond", "#2ca02c"),
    "baseline-heldout": ("baselines (held-out)", "diamond-open", "#2ca02c"),
    "front": ("front (train)", "circle", "#1f77b4"),
    "front-heldout": ("front (held-out)", "square-open", "#d62728"),
}

_W, _H = 760, 430
_ML, _MR, _MT, _MB = 70, 20, 16, 48


def _fmt(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".") if v else "0"


def _marker(p: Point, x: float, y: float) -> str:
    _, shape, color = SERIES[p.series]
    attrs = f'class="pt" data-series="{p.series}" data-tip="{escape(chr(10).join(p.tip))}"'
    if shape == "dot":
        return f'<circle {attrs} cx="{x:.1f}" cy="{y:.1f}" r="2.6" fill="{color}"/>'
    if shape == "circle":
        return f'<circle {attrs} cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="{color}"/>'
    if shape == "square-open":
        return (f'<rect {attrs} x="{x - 4.5:.1f}" y="{y - 4.5:.1f}" width="9" height="9" fill="white" '
                f'fill-opacity="0.01" stroke="{color}" stroke-width="1.6"/>')
    d = f"M{x:.1f} {y - 5.5:.1f}L{x + 5.5:.1f} {y:.1f}L{x:.1f} {y + 5.5:.1f}L{x - 5.5:.1f} {y:.1f}Z"
    fill = f'fill="{color}" fill-opacity="0.75"' if shape == "diamond" else \
        f'fill="white" fill-opacity="0.01" stroke="{color}" stroke-width="1.4"'
    return f'<path {attrs} d="{d}" {fill}/>'


def _y_ticks(lo: float, hi: float) -> list[float]:
    """Decades in [lo, hi]; with fewer than three, also 2× and 5× of each decade."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    ticks = [10.0 ** k for k in range(a, b + 1) if lo <= 10.0 ** k <= hi]
    if len(ticks) < 3:
        ticks = sorted(m * 10.0 ** k for k in range(a, b + 1) for m in (1, 2, 5) if lo <= m * 10.0 ** k <= hi)
    return ticks


def scatter_svg(points: Sequence[Point], *, xlabel: str, ylabel: str, step_line: str | None = "front",
                links: Sequence[tuple[Point, Point]] = ()) -> str:
    """An SVG plot of ``points``: those with x or y not finite, y <= 0 are left out (a log axis has no place for
    zero loss). ``step_line``: a series joined by a post-step line (the front); ``links``: thin lines joining
    two points (a front file's train and held-out loss)."""
    pts = [p for p in points if math.isfinite(p.x) and math.isfinite(p.y) and p.y > 0]
    if not pts:
        return '<p class="empty">No point with a positive quality loss to plot.</p>'
    ylo, yhi = min(p.y for p in pts), max(p.y for p in pts)
    ylo, yhi = (ylo / 1.5, yhi * 1.5) if ylo < yhi else (ylo / 3, yhi * 3)
    xlo, xhi = min(p.x for p in pts), max(p.x for p in pts)
    xmin = max(0.0, math.floor((xlo - 0.02) * 10) / 10)
    xmax = max(xmin + 0.1, math.ceil((xhi + 0.02) * 10) / 10)
    pw, ph = _W - _ML - _MR, _H - _MT - _MB

    def sx(v: float) -> float:
        return _ML + pw * (v - xmin) / (xmax - xmin)

    def sy(v: float) -> float:
        return _MT + ph * (1 - (math.log10(v) - math.log10(ylo)) / (math.log10(yhi) - math.log10(ylo)))

    out = [f'<svg class="plot" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" role="img" '
           f'xmlns="http://www.w3.org/2000/svg">',
           f'<rect x="{_ML}" y="{_MT}" width="{pw}" height="{ph}" fill="white" stroke="#999"/>']
    step = 0.1 if xmax - xmin <= 1.0 else 0.2
    for i in range(int(round((xmax - xmin) / step)) + 1):
        v = xmin + i * step
        out.append(f'<line x1="{sx(v):.1f}" x2="{sx(v):.1f}" y1="{_MT}" y2="{_MT + ph}" stroke="#eee"/>'
                   f'<text x="{sx(v):.1f}" y="{_MT + ph + 16}" text-anchor="middle">{_fmt(v)}</text>')
    for v in _y_ticks(ylo, yhi):
        out.append(f'<line x1="{_ML}" x2="{_ML + pw}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" stroke="#eee"/>'
                   f'<text x="{_ML - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">{v:.3g}</text>')
    out.append(f'<text x="{_ML + pw / 2:.0f}" y="{_H - 8}" text-anchor="middle">{escape(xlabel)}</text>'
               f'<text transform="translate(16 {_MT + ph / 2:.0f}) rotate(-90)" text-anchor="middle">'
               f'{escape(ylabel)}</text>')
    kept = set(map(id, pts))
    for a, b in links:
        if id(a) in kept and id(b) in kept:
            out.append(f'<line data-series="{b.series}" x1="{sx(a.x):.1f}" y1="{sy(a.y):.1f}" x2="{sx(b.x):.1f}" '
                       f'y2="{sy(b.y):.1f}" stroke="#d62728" stroke-opacity="0.5"/>')
    line = sorted((p for p in pts if p.series == step_line), key=lambda p: p.x)
    if len(line) > 1:
        d = f"M{sx(line[0].x):.1f} {sy(line[0].y):.1f}" + "".join(
            f"H{sx(q.x):.1f}V{sy(q.y):.1f}" for q in line[1:])
        out.append(f'<path data-series="{step_line}" d="{d}" fill="none" stroke="{SERIES[step_line][2]}" '
                   f'stroke-width="1.2"/>')
    order = list(SERIES)
    for p in sorted(pts, key=lambda p: order.index(p.series)):
        out.append(_marker(p, sx(p.x), sy(p.y)))
    out.append("</svg>")
    return "".join(out)


def legend_html(present: set[str]) -> str:
    """Legend buttons of the series in ``present`` (a click hides or shows a series)."""
    items = []
    for key, (label, shape, color) in SERIES.items():
        if key in present:
            mark = "●" if shape in ("dot", "circle") else "◆" if shape == "diamond" else "◇" if \
                shape == "diamond-open" else "□"
            items.append(f'<button type="button" class="legend" data-toggle="{key}">'
                         f'<span style="color:{color}">{mark}</span> {escape(label)}</button>')
    return f'<div class="legends">{"".join(items)}</div>'
