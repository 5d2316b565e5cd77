"""The run report: ``report.md``, the Pareto plot ``pareto.png`` (front, baselines, held-out points) and the
block-change heatmap ``profile.png`` (written by :func:`cachesearch.evaluate.save_profile` during the run)."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._util import atomic_write
from .export import REFERENCE_INTERVAL, ExportResult, is_reference_deepcache
from .gallery import write_gallery
from .html_report import write_html_report
from .overview import write_overview
from .redact import hide_password
from .report_plot import plot_pareto
from .storage import relative_storage, storage_spec

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from ..schedule import LossStats
    from .executors.base import Prepared, Progress

__all__ = ["Comparison", "compare_with_baselines", "family_lines", "front_composition", "headline", "plot_pareto",
           "write_report"]


@dataclass
class Comparison:
    """One claim of the report: a front schedule against a baseline, on held-out quality at no higher cost."""

    baseline: str
    kind: str
    baseline_cost: float
    baseline_heldout: float | None
    schedule: str | None
    schedule_cost: float | None
    schedule_heldout: float | None
    itself: bool = False

    @property
    def beaten(self) -> bool:
        """True when a front schedule costs at most the baseline and has lower held-out quality loss."""
        return (self.schedule is not None and self.baseline_heldout is not None
                and self.schedule_heldout is not None and self.schedule_heldout < self.baseline_heldout)


def compare_with_baselines(export: ExportResult) -> list[Comparison]:
    """For each fewer-steps baseline, every DeepCache N=3 branch and the best branch of each DeepCache interval:
    the exported schedule with the lowest held-out loss among those costing at most the baseline (None if
    there is none). DeepCache rows first, then by cost."""
    out = []
    for b in export.baselines:
        if b.heldout is None or b.cost is None or not (b.kind == "steps" or is_reference_deepcache(b)
                                                        or b.best_branch):
            continue
        cheaper = [e for e in export.entries if e.objective <= b.cost + 1e-12 and e.quality.heldout is not None]
        best = min(cheaper, key=lambda e: e.quality.heldout, default=None)  # type: ignore[arg-type, return-value]
        out.append(Comparison(
            baseline=b.name, kind=b.kind or "", baseline_cost=b.cost, baseline_heldout=b.heldout,
            schedule=best.file if best else None, schedule_cost=best.objective if best else None,
            schedule_heldout=best.quality.heldout if best else None,
            itself=best is not None and best.trial == b.trial,
        ))
    return sorted(out, key=lambda c: (c.kind != "deepcache", c.baseline_cost))


def headline(export: ExportResult) -> list[str]:
    """The two claims a run is judged by, as sentences: DeepCache at the papers' default setting (N=3, branch 0;
    the shallowest branch there is when b0 was not validated) and fewer steps at equal cost.

    Not the best branch by train loss: that is the deepest branch, which recomputes nearly everything (cost
    close to 1) and says little about caching."""
    comps = {c.baseline: c for c in compare_with_baselines(export)}
    reference = [b for b in export.baselines if is_reference_deepcache(b) and b.name in comps]
    default = min(reference, key=lambda b: (b.policy.get("branch", 0), b.name), default=None)
    lines = []
    if default is not None:
        c = comps[default.name]
        lines.append(
            f"DeepCache N={REFERENCE_INTERVAL} b{default.policy.get('branch', 0)} (the papers' default) "
            f"`{c.baseline}` (cost {c.baseline_cost:.3f}, held-out {_f(c.baseline_heldout)}): "
            + (f"beaten by `{c.schedule}` (cost {c.schedule_cost:.3f}, held-out {_f(c.schedule_heldout)})"
               if c.beaten else "not beaten"))
    steps = [c for c in comps.values() if c.kind == "steps"]
    if steps:
        won = [c for c in steps if c.beaten]
        lines.append(f"Fewer steps: {len(won)} of {len(steps)} step counts are beaten at equal or lower cost"
                     + (f" (e.g. `{won[0].baseline}` held-out {_f(won[0].baseline_heldout)} vs `{won[0].schedule}` "
                        f"{_f(won[0].schedule_heldout)} at cost {won[0].schedule_cost:.3f} ≤ "
                        f"{won[0].baseline_cost:.3f})" if won else ""))
    return lines


def _f(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


_STAT_TEXT = {"mean": "the mean", "p90": "the p90", "cvar": "the CVaR (mean of the worst 10 %)"}


def _interval(stats: LossStats | None) -> str:
    return "" if stats is None or stats.ci95 is None else f" [{_f(stats.ci95[0])}, {_f(stats.ci95[1])}]"


def _share(stats: LossStats | None) -> str:
    return "–" if stats is None else f"{round(stats.over * stats.n)} / {stats.n}"


def _storage_lines(storage: str, run_dir: Path) -> str:
    """How the report names the study's storage: relative to the run folder (no absolute path of this machine)
    and without a password in a URL."""
    if "://" in storage:
        shown = hide_password(storage)
        return f"`{shown}` — browse with `optuna-dashboard '{shown}'`"
    rel = relative_storage(storage, run_dir)
    return f"`{rel}` (relative to this folder) — browse with `optuna-dashboard {rel}` from this folder"


def front_composition(trials: list[FrozenTrial], export: ExportResult) -> dict[str, dict[str, tuple[int, int]]]:
    """For each categorical parameter of the space (family, CFG branches, scale-shift, ...): value ->
    (evaluated trials with it, front schedules with it). Duplicates count once; baselines count as trials."""
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState

    evaluated = [t for t in trials if t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs]
    front = {t.number for t in export.front_trials}
    out: dict[str, dict[str, list[int]]] = {}
    for t in evaluated:
        for name, value in t.params.items():
            if isinstance(t.distributions.get(name), CategoricalDistribution):
                row = out.setdefault(name, {}).setdefault(str(value), [0, 0])
                row[0] += 1
                row[1] += t.number in front
    return {n: {v: (a, b) for v, (a, b) in sorted(rows.items())} for n, rows in sorted(out.items())}


def family_lines(export: ExportResult, cost_name: str, metric: str) -> list[str]:
    """The per-family table: for each family and budget, its best schedule's held-out loss (train loss and
    {cost_name} in brackets) and trial."""
    if not export.families:
        return []
    budgets = sorted({r.max_cost for r in export.families})
    lines = ["", "## Best of each family", "",
             f"Per family (static: masks; runtime: a library's own cache) and budget: the trial with the lowest train "
             f"{metric} among those with {cost_name} ≤ the budget, validated on the held-out prompts. Cells: held-out "
             f"{metric} (train {metric}, {cost_name}), trial.", "",
             "| family | kind | " + " | ".join(f"≤ {b:g}" for b in budgets) + " |",
             "|---|---|" + "---:|" * len(budgets)]
    rows: dict[tuple[str, str], dict[float, Any]] = {}
    for r in export.families:
        rows.setdefault((r.family, r.kind), {})[r.max_cost] = r
    for (family, kind), cells in rows.items():
        out = []
        for b in budgets:
            r = cells.get(b)
            if r is None or r.trial is None:
                out.append("–")
            elif r.heldout is None:
                out.append(f"t{r.trial}: not validated ({(r.reason or '')[:60]})")
            else:
                out.append(f"**{_f(r.heldout)}** ({_f(r.train)}, {_f(r.cost, 3)}) t{r.trial}")
        lines.append(f"| `{family}` | {kind} | " + " | ".join(out) + " |")
    winners = []
    for b in budgets:
        best = min((r for r in export.families if r.max_cost == b and r.heldout is not None),
                   key=lambda r: r.heldout, default=None)  # type: ignore[arg-type, return-value]
        if best is not None:
            winners.append(f"≤ {b:g}: `{best.family}` ({best.kind})")
    if winners:
        lines += ["", "Lowest held-out loss per budget: " + "; ".join(winners) + "."]
    return lines


def _validation_lines(export: ExportResult) -> list[str]:
    """The held-out validation section: every ranking the export states, its pairs, interval and verdict."""
    if not export.claims:
        return []
    counts = Counter(c["verdict"] for c in export.claims)
    pairs = Counter(e.stats("heldout").n for e in export.entries if e.stats("heldout") is not None)
    lines = ["", "## Held-out validation", "",
             "Every exported schedule and compared baseline was scored on the first held-out pairs; where a ranking "
             "the export states (a front schedule against the next cheaper one, or against a baseline it beats on "
             "average) was not resolved, both were scored on twice the pairs, up to the maximum. A ranking is "
             "resolved when the interval of the mean per-pair loss difference (paired BCa bootstrap; each look at "
             "the level 1 − 0.05 / looks) excludes 0; *unresolved* at the maximum means the two are a tie as far "
             "as those pairs can tell, *reversed* that the held-out pairs rank them the other way.", "",
             f"Rankings: {counts.get('ranked', 0)} ranked, {counts.get('unresolved', 0)} unresolved, "
             f"{counts.get('reversed', 0)} reversed. Front schedules by held-out pairs: "
             + ", ".join(f"{n} pairs: {k}" for n, k in sorted(pairs.items())) + ".", "",
             "| ranking (better vs worse) | kind | pairs | mean difference | interval | verdict |",
             "|---|---|---:|---:|---|---|"]
    for c in export.claims:
        iv = c.get("interval")
        lines.append(f"| {c['label']} | {c['kind']} | {c['pairs']} | {_f(c.get('mean_difference'))} | "
                     f"{'–' if not iv else f'[{_f(iv[0])}, {_f(iv[1])}]'} | {c['verdict']} |")
    return lines


def _composition_lines(trials: list[FrozenTrial], export: ExportResult) -> list[str]:
    comp = front_composition(trials, export)
    if not comp:
        return []
    lines = ["", "## What enters the front", "",
             "Each categorical choice of the space: how many evaluated trials took each value and how many of the "
             f"{len(export.front_trials)} front schedules have it.", "",
             "| parameter | value | evaluated | on the front |", "|---|---|---:|---:|"]
    for name, rows in comp.items():
        lines += [f"| `{name}` | `{v}` | {a} | {b} |" for v, (a, b) in rows.items()]
    return lines


def _video_lines(run_dir: Path, export: ExportResult, metric: str) -> list[str]:
    """For a video run: what a loss is, and each front file's held-out temporal error (from ``heldout.json``)."""
    import json

    try:
        results = json.loads((run_dir / "heldout.json").read_text(encoding="utf-8")).get("results", {})
    except (OSError, ValueError):
        results = {}
    temporal = {r.get("schedule"): r.get("temporal") for r in results.values() if isinstance(r, dict)}
    lines = ["", "## Videos", "",
             f"Each loss above is the `{metric}` of every frame to the reference frame, averaged over the clip's "
             "frames. The temporal error is the RMS difference between the clip's frame-to-frame changes and the "
             "reference's (pixel units; 0 = the same motion): flicker and wrong motion that per-frame scores "
             "cannot see.", "", "| file | held-out per-frame mean | held-out temporal error |", "|---|---:|---:|"]
    lines += [f"| `{e.file}` | {_f(e.quality.heldout)} | {_f(temporal.get(e.name))} |" for e in export.entries]
    return lines


def write_report(prep: Prepared, export: ExportResult, progress: Progress | None = None) -> Path:
    """Write ``report.md``, ``pareto.png``, the image grid (``gallery/``) and ``report.html`` into the run
    directory; returns the path of ``report.md``."""
    from optuna.trial import TrialState

    if progress is not None:
        progress.stage("writing the report")
    run_dir: Path = prep.run_dir
    settings, study, ev = prep.settings, prep.study, prep.ev
    plot = plot_pareto(prep, export, run_dir / "pareto.png")
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state.name.lower() for t in trials)
    dups = sum("duplicate_of" in t.user_attrs for t in trials)
    reasons = Counter((t.user_attrs.get("reason") or "no reason recorded")[:120]
                      for t in trials if t.state == TrialState.FAIL)
    desc = ev.describe()
    sampler = desc.get("sampler", {})
    storage = storage_spec(settings)
    cost_name = "cost ratio" if prep.objectives.kind == "cost" else "latency ratio"
    lines = [
        f"# cachesearch run `{settings.name}`",
        "",
        f"- **model**: `{ev.source}` ({desc['model']['class']}, fingerprint `{ev.fingerprint[:19]}…`)"
        + (" — **random weights: quality numbers describe nothing real**" if ev.random_weights else ""),
        f"- **sampler**: {sampler.get('scheduler')}, {sampler.get('num_inference_steps')} steps, guidance "
        f"{sampler.get('guidance_scale')}, {sampler.get('height')}×{sampler.get('width')} px"
        + (f", {sampler['num_frames']} frames" if sampler.get("num_frames") else "")
        + f", device `{desc.get('device')}`",
        f"- **quality metric**: `{ev.metric_name}` (mean distance to full compute; lower is better)"
        + ("" if ev.metric_name == settings.metric else f" — `{settings.metric}` was asked for but is unavailable "
           f"offline; values are not comparable with `{settings.metric}`"),
        f"- **objectives**: quality ({_STAT_TEXT[prep.objectives.stat]} of the per-image train losses) ↓, "
        f"{cost_name} ↓"
        + (f"; constraints: quality ≤ {prep.objectives.max_quality}" if prep.objectives.max_quality else "")
        + (f"; {'analytic speedup (1 / cost ratio)' if prep.objectives.kind == 'cost' else 'measured speedup'} "
           f"≥ {prep.objectives.min_speedup}" if prep.objectives.min_speedup else ""),
        f"- **search space**: `{prep.space.space.name}` ({len(prep.space.param_names)} parameters; "
        f"families {', '.join(prep.space.space.families)}); sampler `{settings.sampler}` (population "
        f"{settings.population}, seed {settings.seed}), executor `{settings.executor}`",
        f"- **prompts**: {settings.n_train} train images; held-out: {settings.n_heldout} (prompt, seed) pairs per "
        f"schedule, up to {settings.heldout_max} where a ranking needs them (different prompts and seeds)",
        f"- **trials**: {len(trials)} ({', '.join(f'{v} {k}' for k, v in sorted(states.items()))}); "
        f"{dups} duplicates of an evaluated mask were not re-run; "
        f"{sum('screened' in t.user_attrs and 'duplicate_of' not in t.user_attrs for t in trials)} candidates were "
        f"screened out on their first images (provably off the front)",
        f"- **storage**: {_storage_lines(storage, run_dir)}",
        "",
    ]
    for note in prep.notes:
        lines.append(f"> {note}")
        lines.append("")
    lines += [
        f"## Pareto front ({len(export.entries)} schedules)",
        "",
        "Every file was re-compiled from its trial's parameters and evaluated on the held-out prompts before it "
        "was written.",
        "",
        f"Held-out columns: the distribution of the per-image `{ev.metric_name}` over the held-out (prompt, seed) "
        f"pairs — mean with its 95 % interval (BCa bootstrap), median, p90, max and the share of images over "
        f"{settings.tail_threshold:g} (visibly broken).",
        "",
        "*kind*: `static` — a mask cachesearch's applier runs (the same steps and blocks for every prompt; cost from "
        "the MAC table); `runtime` — a library's own cache that decides on the device per prompt (diffusers' "
        "hooks, cache-dit), enabled by its `enable_cache`; its cost is what executed, counted per image (train; "
        "held-out in brackets).",
        "",
        f"| file | kind | trial | {cost_name} | measured speedup | train mean | train p90 | "
        f"held-out mean [95 % interval] | median | p90 | max | > {settings.tail_threshold:g} | pairs | "
        "accuracy held-out | from |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for e in export.entries:
        tr, held = e.stats("train"), e.stats("heldout")
        cost = _f(e.objective, 3) + (f" ({_f(e.cost_heldout, 3)})" if e.cost_heldout is not None else "")
        lines.append(
            f"| [`{e.file}`](schedules/{e.file}) | {e.kind} | {e.trial} | {cost} | "
            f"{_f(e.speedup, 3)} | {_f(e.quality.train)} | {_f(tr and tr.p90)} | "
            f"{_f(e.quality.heldout)}{_interval(held)} | {_f(held and held.median)} | {_f(held and held.p90)} | "
            f"{_f(held and held.max)} | {_share(held)} | {held.n if held else '–'} | "
            f"{_f(e.accuracy.heldout, 3)} | {e.baseline or 'search'} |"
        )
    if sampler.get("num_frames"):
        lines += _video_lines(run_dir, export, ev.metric_name)
    comparisons = compare_with_baselines(export)
    lines += ["", "## Against the baselines", ""]
    lines += [f"- {h}" for h in headline(export)]
    lines += ["",
              "For each fewer-steps baseline, every DeepCache N=3 branch and the best branch (lowest train loss) of "
              "each other interval: the front schedule with the lowest held-out loss among those costing at most as "
              "much.", "",
              "much. *Paired*: the ranking judged on the per-pair differences of the two on the same held-out pairs "
              "(see Held-out validation).", "",
              f"| baseline | its {cost_name} | its held-out mean / p90 | best front schedule at ≤ cost | "
              f"its {cost_name} | its held-out mean / p90 | better | paired |",
              "|---|---:|---:|---|---:|---:|:---:|---|"]
    claims = {c.get("label"): c for c in export.claims}
    rows = {b.name: b for b in export.baselines}
    stats = {e.file: e.stats("heldout") for e in export.entries}
    for c in comparisons:
        verdict = "yes" if c.beaten else "no (the baseline itself)" if c.itself else "no"
        claim = claims.get(f"{c.schedule} vs {c.baseline}")
        paired = "–" if claim is None else f"{claim['verdict']} on {claim['pairs']} pairs"
        b_p90, s_p90 = getattr(rows.get(c.baseline), "heldout_stats", None), stats.get(c.schedule or "")
        lines.append(f"| `{c.baseline}` | {_f(c.baseline_cost, 3)} | {_f(c.baseline_heldout)} / "
                     f"{_f(b_p90 and b_p90.p90)} | {'`' + c.schedule + '`' if c.schedule else '–'} | "
                     f"{_f(c.schedule_cost, 3)} | {_f(c.schedule_heldout)} / {_f(s_p90 and s_p90.p90)} | {verdict} | "
                     f"{paired} |")
    lines += _validation_lines(export)
    lines += family_lines(export, cost_name, ev.metric_name)
    lines += _composition_lines(trials, export)
    lines += ["", "![Pareto plot](pareto.png)", "",
              "Grey: every evaluated trial (train prompts). Blue: the exported front (train); red squares: the same "
              "schedules on the held-out prompts. Baselines: filled = train, hollow = held-out.", "",
              "## Block-change profile", "",
              "Relative L1 change of each stage's output between consecutive steps (train prompts, full compute): "
              "blocks and steps with small changes are where caching is cheap.", "",
              "![block-change heatmap](profile.png)", ""]
    if reasons:
        lines += ["## Failed trials", "", "| reason | trials |", "|---|---:|"]
        lines += [f"| {r.replace('|', '/')} | {n} |" for r, n in reasons.most_common(10)]
        lines.append("")
    lines += ["## Files", "",
              "- `schedules/*.yaml` + `schedules/index.yaml`: the front as `cachesearch/schedule` files (each "
              "file's `format` names its version; `cachesearch validate FILE --model M` checks one)",
              "- `report.html`: this report as one self-contained page, with the front as an interactive plot, "
              "images of the picked schedules beside full compute (`gallery/`) and their masks",
              "- `pareto.png`, `profile.png` (+ `profile.json`): plots; `overview.png`: the front beside the image "
              "grid, one picture",
              f"- `run.yaml`, `space.yaml`: the run's settings and search space; resume with "
              f"`cachesearch run --name {settings.name}`",
              ""]
    path = run_dir / "report.md"
    atomic_write(path, "\n".join(lines))
    _ = plot
    gallery = write_gallery(prep, export, progress)
    write_overview(run_dir, gallery, prep.ev.metric_name)
    if progress is not None:
        progress.stage("writing report.html")
    summary = [re.sub(r"[*`]", "", line[2:]) for line in lines if line.startswith("- **")]
    write_html_report(prep, export, gallery, comparisons, summary=summary)
    return path
