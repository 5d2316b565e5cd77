"""``report.html``: one self-contained page beside ``report.md`` — the front as an interactive plot (hover a
point for its file, cost, measured speedup where measured, train and held-out loss), the image grid (reference
beside the schedules picked at a few budgets, :mod:`..gallery`), each picked schedule's step × block mask, the
front and the baselines tables. Nothing is loaded from the network: images are ``data:`` URIs, the plot is
inline SVG with a few lines of inline script."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..._util import atomic_write
from ..export import baseline_rows
from ..trials import FULL_COMPUTE
from ._masks import mask_svg
from ._page import fmt, grid_html, page, table
from ._plot import Point, legend_html, scatter_svg

if TYPE_CHECKING:
    from ..executors.base import Prepared
    from ..export import ExportResult
    from ..gallery import Gallery

__all__ = ["write_html_report"]


def _plot_section(prep: Prepared, export: ExportResult, cost_name: str) -> str:
    from optuna.trial import TrialState

    study = prep.study
    metric = export.metric or "quality"
    trials = study.get_trials(deepcopy=False)
    points: list[Point] = []
    for t in trials:
        if t.state == TrialState.COMPLETE and t.values is not None and "duplicate_of" not in t.user_attrs \
                and t.values[1] < FULL_COMPUTE:
            kind = (t.user_attrs.get("policy") or {}).get("kind", "?")
            points.append(Point(t.values[1], t.values[0], "trial",
                                (f"trial {t.number} ({kind})", f"{cost_name} {t.values[1]:.3f}",
                                 f"{metric} train {t.values[0]:.4g}")))
    for r in baseline_rows(study):
        if r.quality is not None and r.cost is not None and r.cost < FULL_COMPUTE:
            points.append(Point(r.cost, r.quality, "baseline",
                                (f"baseline {r.name}", f"{cost_name} {r.cost:.3f}", f"{metric} train {r.quality:.4g}")))
    for b in export.baselines:
        if b.heldout is not None and b.cost is not None and b.cost < FULL_COMPUTE:
            points.append(Point(b.cost, b.heldout, "baseline-heldout",
                                (f"baseline {b.name}", f"{cost_name} {b.cost:.3f}",
                                 f"{metric} train {fmt(b.quality)}, held-out {b.heldout:.4g}")))
    links = []
    for e in export.entries:
        tip = (e.file, f"{cost_name} {e.objective:.3f}",
               f"measured speedup {e.speedup:.2f}×" if e.speedup else "speedup not measured (--latency measured)",
               f"{metric} train {fmt(e.quality.train)}, held-out {fmt(e.quality.heldout)}",
               *_tail_tip(e), f"from {e.baseline or 'the search'}")
        train = Point(e.objective, e.quality.train if e.quality.train is not None else float("nan"), "front", tip)
        held = Point(e.objective, e.quality.heldout if e.quality.heldout is not None else float("nan"),
                     "front-heldout", tip)
        points += [train, held]
        links.append((train, held))
    xlabel = ("cost ratio (analytic MACs / full compute)" if prep.objectives.kind == "cost"
              else "latency / full-compute latency (measured)")
    svg = scatter_svg(points, xlabel=xlabel, ylabel=f"{metric} to full compute (lower is better)", links=links)
    present = {p.series for p in points}
    return (f"<h2>Quality × cost</h2>{legend_html(present)}{svg}<p class=\"caption\">Hover a point for its "
            "file and numbers; click a legend entry to hide or show it. Grey: every evaluated trial (train "
            "prompts); blue: the exported front (train), red squares: the same files on the held-out prompts. "
            "Full compute (cost 1) is the reference itself and is not drawn.</p>")


def _tail_tip(e: Any) -> tuple[str, ...]:
    held = e.stats("heldout")
    if held is None:
        return ()
    return (f"held-out p90 {fmt(held.p90)}, max {fmt(held.max)}, {round(held.over * held.n)} of {held.n} pairs "
            f"over {held.threshold:g}",)


def _front_section(export: ExportResult, metric: str, cost_name: str) -> str:
    rows = []
    threshold = None
    for e in export.entries:
        held = e.stats("heldout")
        threshold = threshold or (held.threshold if held else None)
        interval = f" [{fmt(held.ci95[0])}, {fmt(held.ci95[1])}]" if held and held.ci95 else ""
        rows.append([f"<code>{escape(e.file)}</code>", fmt(e.objective, 3), fmt(e.quality.train),
                     fmt(e.quality.heldout) + interval, fmt(held and held.median), fmt(held and held.p90),
                     fmt(held and held.max), f"{round(held.over * held.n)} / {held.n}" if held else "–",
                     fmt(e.accuracy.heldout, 3), escape(e.baseline or "search")])
    over = f"&gt; {threshold:g}" if threshold else "broken"
    return (f"<h2>Pareto front ({len(export.entries)} files)</h2><p class=\"caption\">Held-out: the per-image "
            f"{escape(metric)} over the held-out (prompt, seed) pairs — mean with its 95 % interval (BCa bootstrap), "
            "median, p90, max, and the images over the threshold out of the pairs scored (16 first, more where a "
            "ranking needed them).</p>"
            + table(["file", cost_name, f"{escape(metric)} train", f"{escape(metric)} held-out mean [95 %]",
                     "median", "p90", "max", over, "accuracy held-out", "from"], rows,
                    numeric=(1, 2, 3, 4, 5, 6, 7, 8), cls="front"))


def _validation_section(export: ExportResult) -> str:
    if not export.claims:
        return ""
    rows = [[escape(c["label"]), escape(c["kind"]), str(c["pairs"]), fmt(c.get("mean_difference")),
             f"[{fmt(c['interval'][0])}, {fmt(c['interval'][1])}]" if c.get("interval") else "–",
             f'<span class="{"yes" if c["verdict"] == "ranked" else "no"}">{escape(c["verdict"])}</span>']
            for c in export.claims]
    return ("<h2>Held-out validation</h2><p class=\"caption\">Each ranking the export states (a front file against "
            "the next cheaper one; a front file against a baseline it beats on average), judged on the per-pair "
            "loss differences over the same held-out pairs (paired BCa interval, each look at level "
            "1 − 0.05 / looks). Unresolved rankings got twice the pairs, up to the maximum.</p>"
            + table(["ranking (better vs worse)", "kind", "pairs", "mean difference", "interval", "verdict"], rows,
                    numeric=(2, 3), cls="validation"))


def _baselines_section(export: ExportResult, comparisons: Sequence[Any], metric: str, cost_name: str) -> str:
    best = {c.baseline: c for c in comparisons}
    claims = {c.get("label"): c for c in export.claims}
    rows = []
    for b in sorted(export.baselines, key=lambda b: (b.cost is None, b.cost or 0.0, b.name)):
        c = best.get(b.name)
        verdict = "–"
        if c is not None:
            verdict = ('<span class="yes">yes</span>' if c.beaten else
                       '<span class="no">no (the baseline itself)</span>' if c.itself else '<span class="no">no</span>')
        claim = claims.get(f"{c.schedule} vs {b.name}") if c is not None else None
        paired = "–" if claim is None else f"{escape(claim['verdict'])} on {claim['pairs']} pairs"
        rows.append([f"<code>{escape(b.name)}</code>", escape(b.kind or ""), fmt(b.cost, 3), fmt(b.quality),
                     fmt(b.heldout), fmt(b.heldout_stats and b.heldout_stats.p90),
                     f"<code>{escape(c.schedule)}</code>" if c and c.schedule else "–",
                     fmt(c.schedule_cost, 3) if c else "–", fmt(c.schedule_heldout) if c else "–", verdict, paired])
    return ("<h2>Against the baselines</h2><p class=\"caption\">Each validated baseline; for the fewer-steps "
            "baselines and the DeepCache ones the report compares, the front file with the lowest held-out loss "
            "among those costing at most as much.</p>"
            + table(["baseline", "kind", cost_name, f"{escape(metric)} train", f"{escape(metric)} held-out",
                     "held-out p90", "best front file at ≤ cost", f"its {cost_name}", "its held-out", "better",
                     "paired"], rows, numeric=(2, 3, 4, 5, 7, 8), cls="baselines"))


def _masks_section(gallery: Gallery, export: ExportResult) -> str:
    from ...schedule import load_schedule

    parts = ["<h2>Masks of the picked schedules</h2><p class=\"caption\">Rows: blocks; columns: sampler steps; "
             "dark: recompute, light: reuse the cached output.</p>"]
    for c in gallery.columns:
        if c.file is None:
            continue
        try:
            svg = mask_svg(load_schedule(export.schedules_dir / c.file))
        except Exception as e:  # noqa: BLE001 - one unreadable file does not hide the others
            svg = f'<p class="err">cannot read {escape(c.file)}: {escape(str(e))}</p>'
        parts.append(f"<h3><code>{escape(c.file)}</code> ({escape(c.label)})</h3>{svg}")
    return "".join(parts)


def write_html_report(prep: Prepared, export: ExportResult, gallery: Gallery, comparisons: Sequence[Any],
                      summary: Sequence[str] = ()) -> Path:
    """Write ``<run>/report.html`` (self-contained); ``summary``: plain-text lines for the top of the page."""
    run_dir: Path = prep.run_dir
    metric = export.metric or "quality"
    cost_name = "cost ratio" if prep.objectives.kind == "cost" else "latency ratio"
    head = (f"<h1>cachesearch run <code>{escape(prep.settings.name)}</code></h1><ul>"
            + "".join(f"<li>{escape(line)}</li>" for line in summary) + "</ul>")
    grid = (f"<h2>Images</h2><p class=\"caption\">The first {len(gallery.prompts)} held-out prompts: full compute "
            f"beside the front file picked at each budget (the lowest held-out loss costing at most the budget, "
            f"as <code>cachesearch pick --max-cost</code> picks).</p>" + grid_html(gallery, run_dir, metric, cost_name))
    html = page(f"cachesearch run {prep.settings.name}", [
        head, _plot_section(prep, export, cost_name), grid, _masks_section(gallery, export),
        _front_section(export, metric, cost_name), _baselines_section(export, list(comparisons), metric, cost_name),
        _validation_section(export),
    ])
    return atomic_write(run_dir / "report.html", html)
