"""The page around the parts: style, the hover and legend script, the image grid and the tables. Everything is
inline (images as ``data:`` URIs), so the file opens anywhere without a network."""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

__all__ = ["STYLE", "SCRIPT", "data_uri", "fmt", "grid_html", "page", "table"]

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1180px;
color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ddd;padding:3px 8px;vertical-align:top}
th{background:#f5f5f5;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:12.5px}svg text{font-size:11px;fill:#333}.caption{color:#555;font-size:12.5px;margin:2px 0 14px}
.legends{margin:6px 0}.legend{border:1px solid #ccc;background:#fafafa;border-radius:4px;margin:0 6px 4px 0;
cursor:pointer;font:inherit;font-size:12.5px}.legend.off{opacity:.4}
.grid td{text-align:center}.grid img{image-rendering:pixelated;width:128px;height:auto;display:inline-block;
margin:1px}.grid td.prompt{text-align:left;max-width:180px;font-size:12.5px}
.hidden{display:none}#tip{position:absolute;display:none;background:#222;color:#fff;padding:6px 8px;
border-radius:4px;font-size:12px;white-space:pre;pointer-events:none;z-index:9}
.pt{cursor:pointer}.yes{color:#1a7f37;font-weight:600}.no{color:#9a6700}.err{color:#b00}
"""

SCRIPT = """
(function () {
  var tip = document.getElementById('tip');
  document.querySelectorAll('[data-tip]').forEach(function (el) {
    el.addEventListener('mouseenter', function () {
      if (!el.dataset.tip) { return; }
      tip.textContent = el.dataset.tip;
      tip.style.display = 'block';
    });
    el.addEventListener('mousemove', function (ev) {
      tip.style.left = (ev.pageX + 14) + 'px';
      tip.style.top = (ev.pageY + 14) + 'px';
    });
    el.addEventListener('mouseleave', function () { tip.style.display = 'none'; });
  });
  document.querySelectorAll('[data-toggle]').forEach(function (button) {
    button.addEventListener('click', function () {
      var off = button.classList.toggle('off');
      document.querySelectorAll('[data-series="' + button.dataset.toggle + '"]').forEach(function (el) {
        el.classList.toggle('hidden', off);
      });
    });
  });
})();
"""


def fmt(x: Any, digits: int = 4) -> str:
    """A number for a table cell (``–`` for none)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return escape(str(x))


def data_uri(path: Path) -> str:
    """A PNG file as a ``data:`` URI."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = (),
          cls: str = "") -> str:
    """An HTML table; cells are HTML already; columns in ``numeric`` are right-aligned."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                     for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def grid_html(gallery: Any, run_dir: Path, metric: str, cost_name: str) -> str:
    """The image grid: one row per prompt, the reference and each picked schedule as columns."""
    header = ["prompt"]
    for c in gallery.columns:
        if c.file is None:
            header.append(f"<b>{escape(c.label)}</b>")
            continue
        header.append(f"<b>{escape(c.label)}</b><br><code>{escape(c.file)}</code><br>{cost_name} "
                      f"{fmt(c.objective, 3)}<br>{escape(metric)} held-out {fmt(c.heldout)}")
    rows = []
    for i, prompt in enumerate(gallery.prompts):
        cells = [f'<td class="prompt">{escape(prompt)}</td>']
        for c in gallery.columns:
            if c.error is not None or i >= len(c.images):
                cells.append(f'<td class="err">no image: {escape(c.error or "missing")}</td>')
                continue
            imgs = "".join(f'<img class="grid-image" src="{data_uri(run_dir / f)}" alt="{escape(c.label)}, '
                           f'prompt {i + 1}, {escape(label)}" title="{escape(label)}">'
                           for f, label in zip(c.images[i], gallery.frame_labels))
            cells.append(f"<td>{imgs}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in header)
    return f'<table class="grid"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def page(title: str, sections: Sequence[str]) -> str:
    """The whole document."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
            f"<div id=\"tip\"></div>{''.join(sections)}<script>{SCRIPT}</script></body></html>\n")
