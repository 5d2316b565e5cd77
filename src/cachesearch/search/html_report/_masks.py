"""A schedule's step × block recompute mask as an inline SVG heatmap: one row per block (two, ``cond`` and
``uncond``, where the CFG branches differ), one column per sampler step; dark = recompute, light = reuse."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...schedule import Schedule

__all__ = ["mask_svg"]

_RUN, _REUSE = "#1f4e79", "#dbe7f3"


def mask_svg(schedule: Schedule) -> str:
    """The heatmap of ``schedule`` (its steps, which may be fewer than its reference's); a runtime schedule has
    no static mask: its library and configuration instead."""
    runtime = getattr(schedule, "runtime", None)
    if runtime is not None:
        configs = "; ".join(f"{name}: {cfg.method}({', '.join(f'{k}={v!r}' for k, v in dict(cfg.fields).items())})"
                            for name, cfg in dict(runtime.configs).items() if cfg is not None)
        return (f'<p class="caption">Runtime schedule: {escape(runtime.library)} '
                f"{escape(runtime.version or '')} decides on the device, call by call, which blocks to reuse; "
                f"no static mask. <code>{escape(configs)}</code></p>")
    rows: list[tuple[str, str]] = []
    for bm in schedule.blocks:
        if bm.shared:
            rows.append((bm.block, bm.cond))
        else:
            rows += [(f"{bm.block} (cond)", bm.cond), (f"{bm.block} (uncond)", bm.uncond)]
    steps = schedule.num_steps
    cell = max(6, min(16, 640 // max(steps, 1)))
    label_w = 8 + 7 * max(len(r[0]) for r in rows)
    top = 18
    width, height = label_w + cell * steps + 4, top + cell * len(rows) + 4
    out = [f'<svg class="mask" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'xmlns="http://www.w3.org/2000/svg">']
    every = max(1, steps // 10)
    for s in range(0, steps, every):
        out.append(f'<text x="{label_w + cell * s + cell / 2:.1f}" y="{top - 5}" text-anchor="middle" '
                   f'font-size="10">{s}</text>')
    for r, (label, mask) in enumerate(rows):
        y = top + cell * r
        out.append(f'<text x="{label_w - 6}" y="{y + cell * 0.75:.1f}" text-anchor="end" font-size="11">'
                   f"{escape(label)}</text>")
        for s, ch in enumerate(mask):
            what = "recompute" if ch == "R" else "reuse"
            out.append(f'<rect x="{label_w + cell * s}" y="{y}" width="{cell - 1}" height="{cell - 1}" '
                       f'fill="{_RUN if ch == "R" else _REUSE}" data-tip="{escape(label)}, step {s}: {what}"/>')
    out.append("</svg>")
    run = sum(m.count("R") for _, m in rows)
    total = sum(len(m) for _, m in rows)
    ref = schedule.reference
    note = (f" ({steps} of the reference's {ref.num_inference_steps} steps)"
            if ref is not None and ref.num_inference_steps != steps else "")
    return (f"{''.join(out)}<p class=\"caption\">{len(rows)} block row(s) × {steps} steps{note}; "
            f"{run} of {total} block-steps recompute ({run / max(total, 1):.0%}).</p>")
