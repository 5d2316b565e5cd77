"""``overview.png``: one picture of a run — the Pareto plot beside the image grid (full compute and the
schedules picked at a few budgets, on the first held-out prompts). The README shows the committed example's.

It is drawn from files the report has already written (``pareto.png`` and ``gallery/``), so it costs no model
call; a video shows the first frame of each clip.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .._util import save_figure

if TYPE_CHECKING:
    from .gallery import Column, Gallery

__all__ = ["OVERVIEW", "write_overview"]

OVERVIEW = "overview.png"


def _title(col: Column) -> str:
    if col.file is None:
        return "full compute"
    parts = [f"cost {col.objective:.2f}"]
    if col.heldout is not None:
        parts.append(f"held-out {col.heldout:.3f}")
    return "\n".join(parts)


def write_overview(run_dir: Path, gallery: Gallery, metric: str, path: Path | None = None) -> Path | None:
    """Compose ``pareto.png`` and the gallery's images into ``overview.png`` (or ``path``); returns the file, or
    None when there is no plot or no image to show."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from PIL import Image

    pareto = run_dir / "pareto.png"
    columns = [c for c in gallery.columns if c.images and not c.error]
    rows = len(gallery.prompts)
    if not pareto.is_file() or len(columns) < 2 or rows == 0:
        return None
    n_cols = len(columns)
    fig = plt.figure(figsize=(7.5 + 1.45 * n_cols, 5.0), dpi=110)
    grid = fig.add_gridspec(rows, 1 + n_cols, width_ratios=[7.5] + [1.45] * n_cols, wspace=0.06, hspace=0.08)
    try:
        ax = fig.add_subplot(grid[:, 0])
        ax.imshow(Image.open(pareto).convert("RGB"))
        ax.set_axis_off()
        for j, col in enumerate(columns):
            for i in range(rows):
                cell = fig.add_subplot(grid[i, 1 + j])
                cell.imshow(Image.open(run_dir / col.images[i][0]).convert("RGB"), interpolation="nearest")
                cell.set_xticks([])
                cell.set_yticks([])
                if i == 0:
                    cell.set_title(_title(col), fontsize=7)
        fig.subplots_adjust(left=0.01, right=0.99, top=0.86, bottom=0.03)
        fig.suptitle(f"front (left) and held-out images of the schedules picked at {n_cols - 1} budgets "
                     f"({metric} to full compute)", fontsize=9)
        return save_figure(fig, path or run_dir / OVERVIEW)
    finally:
        plt.close(fig)
