"""The Pareto plot of a run, ``pareto.png``: every evaluated trial, the front on train and held-out, the
baselines (drawn in the statistic the search minimised)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .._util import save_figure
from .export import ExportEntry, ExportResult, baseline_rows
from .trials import FULL_COMPUTE, is_full_compute

if TYPE_CHECKING:
    from ..schedule import LossStats
    from .executors.base import Prepared

__all__ = ["plot_pareto"]


def _positive(x: float | None) -> bool:
    return x is not None and x > 0


def plot_pareto(prep: Prepared, export: ExportResult, path: Path) -> Path:
    """Scatter of every completed trial, the front (train and held-out) and the baselines; written atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState

    study = prep.study
    xlabel = "cost ratio (analytic MACs / full)" if prep.objectives.kind == "cost" else "latency / baseline latency"
    metric = export.metric or "quality"
    stat = prep.objectives.stat  # trials' train values are this statistic: draw every point in it

    def of(stats: LossStats | None, mean: float | None) -> float | None:
        return mean if stat == "mean" or stats is None else stats.get(stat)

    # Full compute is the reference itself (zero loss, up to rounding): it would stretch the log axis to 1e-13
    # and squash the useful region; it is left out, as the export leaves it out.
    pts = [(t.values[1], t.values[0]) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
           if t.values is not None and "duplicate_of" not in t.user_attrs and t.values[0] > 0
           and not is_full_compute(t)]
    fig, ax = plt.subplots(figsize=(7.5, 5.0), dpi=120)
    try:
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=10, c="0.75", label="trials (train)", zorder=1)
        colors = {"steps": "tab:orange", "deepcache": "tab:green", "blockcaching": "tab:purple"}
        markers = {"steps": "^", "deepcache": "D", "blockcaching": "P"}
        rows = [r for r in baseline_rows(study) if _positive(r.quality) and (r.cost or 0.0) < FULL_COMPUTE]
        for fam in colors:
            fam_rows = [r for r in rows if r.kind == fam]
            if fam_rows:
                ax.scatter([r.cost for r in fam_rows], [r.quality for r in fam_rows], s=22, c=colors[fam],
                           marker=markers[fam], alpha=0.7, label=f"{fam} baselines (train)", zorder=2)
            held = [b for b in export.baselines if b.kind == fam and _positive(of(b.heldout_stats, b.heldout))]
            if held:
                ax.scatter([b.cost for b in held], [of(b.heldout_stats, b.heldout) for b in held], s=34,
                           facecolors="none",
                           edgecolors=colors[fam], marker=markers[fam], label=f"{fam} baselines (held-out)", zorder=3)
        def train(e: ExportEntry) -> float | None:
            return of(e.stats("train"), e.quality.train)

        def heldout(e: ExportEntry) -> float | None:
            return of(e.stats("heldout"), e.quality.heldout)

        entries: list[ExportEntry] = sorted(
            (e for e in export.entries if _positive(train(e)) and _positive(heldout(e))), key=lambda e: e.objective)
        if entries:
            xs = [e.objective for e in entries]
            ax.step(xs, [train(e) for e in entries], where="post", c="tab:blue", lw=1.2, zorder=4)
            ax.scatter(xs, [train(e) for e in entries], c="tab:blue", s=26, label="front (train)", zorder=5)
            ax.scatter(xs, [heldout(e) for e in entries], facecolors="none", edgecolors="tab:red",
                       s=40, marker="s", label="front (held-out)", zorder=6)
            for e in entries:
                ax.plot([e.objective] * 2, [train(e), heldout(e)], c="tab:red", lw=0.6, alpha=0.6, zorder=4)
        if pts or entries:
            ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{metric} to full compute{'' if stat == 'mean' else f', {stat} over images'} "
                      f"(lower is better)")
        ax.set_title(f"{prep.settings.name}: quality × cost", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best", framealpha=0.85)
        fig.tight_layout()
        save_figure(fig, path)
    finally:
        plt.close(fig)
    return path
