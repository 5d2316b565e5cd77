"""Pieces of ``search_efficiency.py`` that need no model: the configurations compared, what a run's study says
about the compute it spent, hypervolume, and the compute a run needs to reach a share of a target.

Compute is counted in denoiser MACs that actually executed (``EvalResult.macs``: every image, every CFG branch;
steps a candidate took from an earlier candidate's prefix are not executed and not counted). A run's fixed cost
is what it executes at full compute before its candidates: the train references, the block-change profile
(``--profile-prompts`` images) and MagCache's calibration where the space has it; the export's held-out check of
the final front is reported apart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

# What `cachesearch run` did before issue 28, pinned (the settings' defaults change with it).
TODAY = {"sampler": "nsga2", "population": 24, "screen": "4", "n_train": 8, "warm_start": "baselines",
         "prefix_cache_mb": 0}
SHARED = {**TODAY, "prefix_cache_mb": 512}
CONFIGS: dict[str, dict[str, Any]] = {
    "today": TODAY,  # the old default: NSGA-II, screening on 4 of 8 images, no prefix sharing
    "nsga2": SHARED,  # the same with exact prefix sharing
    "tpe": {**SHARED, "sampler": "tpe"},
    "gp": {**SHARED, "sampler": "gp"},
    "random": {**SHARED, "sampler": "random"},
    "nsga2-grid": {**SHARED, "warm_start": "grid"},
    "tpe-grid": {**SHARED, "sampler": "tpe", "warm_start": "grid"},
    "nsga2-screen2,4": {**SHARED, "screen": "2,4"},
    "nsga2-screen-off": {**SHARED, "screen": "off"},
    "tpe-screen2,4": {**SHARED, "sampler": "tpe", "screen": "2,4"},
    "tpe-train4": {**SHARED, "sampler": "tpe", "n_train": 4, "screen": "2"},
    "tpe-train16": {**SHARED, "sampler": "tpe", "n_train": 16, "screen": "4,8"},
    "new": {},  # the defaults of this checkout
}

LOSS_FLOOR = 1e-4
"""Losses below this count as this (log10 of 0 is -inf; 1e-4 LPIPS is far below what anyone sees)."""
REF_POINT = (math.log10(0.5), 1.05)
"""Hypervolume reference point: (log10 loss 0.5, cost ratio 1.05), the one issue 28 measured today's default with."""


def hypervolume(points: Sequence[tuple[float, float]], ref: tuple[float, float] = REF_POINT) -> float:
    """Area dominated by ``(loss, cost)`` points (both minimised) in (log10 loss, cost) up to ``ref``."""
    pts = sorted((math.log10(max(q, LOSS_FLOOR)), c) for q, c in points)
    hv, best_c = 0.0, ref[1]
    for lq, c in pts:
        if lq < ref[0] and c < best_c:
            hv += (ref[0] - lq) * (best_c - c)
            best_c = c
    return hv


def pareto(points: Sequence[tuple[float, float, Any]]) -> list[tuple[float, float, Any]]:
    """The non-dominated ``(loss, cost, payload)`` points (both minimised), by loss."""
    out: list[tuple[float, float, Any]] = []
    for q, c, p in sorted(points, key=lambda x: (x[0], x[1])):
        if not out or c < out[-1][1]:
            out.append((q, c, p))
    return out


def trial_records(study: Any) -> list[dict[str, Any]]:
    """Every finished trial of a run in completion order: its kind (``evaluated``, ``screened``, ``duplicate``,
    ``failed``), the MACs it executed and took from a shared prefix, when it finished, and its train values."""
    from optuna.trial import TrialState

    out = []
    for t in sorted((t for t in study.get_trials(deepcopy=False) if t.datetime_complete is not None),
                    key=lambda t: (t.datetime_complete, t.number)):
        a = t.user_attrs
        res = a.get("result") or {}
        if "duplicate_of" in a:
            kind = "duplicate"
        elif "screened" in a:
            kind = "screened"
        elif t.state == TrialState.COMPLETE:
            kind = "evaluated"
        else:
            kind = "failed"
        out.append({"number": t.number, "kind": kind, "done": t.datetime_complete.timestamp(),
                    "start": t.datetime_start.timestamp() if t.datetime_start else None,
                    "macs": 0.0 if kind == "duplicate" else float(res.get("macs") or 0.0),
                    "reused": 0.0 if kind == "duplicate" else float(res.get("macs_reused") or 0.0),
                    "values": list(t.values) if kind == "evaluated" else None,
                    "feasible": all(v <= 0 for v in t.constraints) if t.constraints else True,
                    "mask_key": a.get("mask_key"), "params": dict(t.params)})
    return out


def front_at(records: Sequence[Mapping[str, Any]], upto: int) -> list[Mapping[str, Any]]:
    """The train front (feasible, fully evaluated, cost < 1 as exported) of the first ``upto`` records."""
    pts = [(r["values"][0], r["values"][1], r) for r in records[:upto]
           if r["kind"] == "evaluated" and r["feasible"] and r["values"][1] < 1.0 - 1e-9]
    return [p for _, _, p in pareto(pts)]


def checkpoints(cum: Sequence[float], n: int) -> list[int]:
    """Indices ``upto`` (records taken) at ``n`` compute levels spaced geometrically up to the run's total, the
    last being every record."""
    total = cum[-1] if cum else 0.0
    if not cum or total <= 0:
        return [len(cum)]
    first = next((c for c in cum if c > 0), total)
    levels = [first * (total / first) ** (i / max(1, n - 1)) for i in range(n)]
    # relative tolerance: (total / first) ** 1 can round above total at 1e12 MACs
    out = sorted({next((i + 1 for i, c in enumerate(cum) if c >= lv * (1 - 1e-9)), len(cum)) for lv in levels}
                 | {len(cum)})
    return out


def compute_to_reach(curve: Sequence[tuple[float, float]], target: float) -> float | None:
    """The least compute at which ``curve`` (``(compute, hypervolume)`` checkpoints, in order) reaches ``target``;
    ``None`` when it never does."""
    return next((x for x, hv in curve if hv >= target - 1e-12), None)


def median(values: Sequence[float | None]) -> float | None:
    """Median of the values that are known, ``None`` when fewer than half are (a run that never reached a
    target counts as infinitely late)."""
    known = sorted(v for v in values if v is not None)
    if 2 * len(known) < len(values) or not known:
        return None
    padded = known + [math.inf] * (len(values) - len(known))
    m = len(padded) // 2
    return padded[m] if len(padded) % 2 else (padded[m - 1] + padded[m]) / 2


LEVELS = (0.90, 0.95, 1.00)
"""Shares of the old default's final hypervolume the table gives the compute to."""


def _cell(cell: Mapping[str, Any]) -> str:
    if cell["of_today"] is None:
        return "never"
    wall = "" if cell.get("wall_s") is None else f", {cell['wall_s']:.0f} s"
    return f"{cell['of_today']:.2f}× ({cell['macs']:.3g}{wall})"


def table(model: str, result: Mapping[str, Any]) -> str:
    """One model's table (markdown): per configuration the seeds, the median final hypervolume and the compute (as
    a multiple of the old default's, MACs, median wall seconds) to reach 90 / 95 / 100 % of the old default's
    final hypervolume, and the share of candidate MACs prefix sharing took from an earlier candidate."""
    head = ["config", "seeds", "final HV", *(f"to {int(x * 100)} %" for x in LEVELS), "prefix saving"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for config, row in result["table"].items():
        cells = [config, str(row["seeds"]), f"{row['final_hv']:.3f}",
                 *(_cell(row[f"{int(x * 100)}%"]) for x in LEVELS), f"{row['prefix_saving']:.1%}"]
        lines.append("| " + " | ".join(cells) + " |")
    return (f"**{model}**: the old default's final hypervolume {result['target_hv']:.3f} at "
            f"{result['today_macs']:.3g} MACs (compute: its full-compute images before the candidates, then the "
            "candidates)\n\n"
            + "\n".join(lines))


def prefix_table(doc: Mapping[str, Any]) -> str:
    """The ``prefix`` mode's table (markdown)."""
    lines = ["| space | model | candidates | resumed from a prefix | MACs executed | MACs from a prefix | saving |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for label, r in doc["cases"].items():
        saving = "–" if r["saving"] is None else f"{r['saving']:.1%}"
        lines.append(f"| {label} | {r['model']} | {r['candidates']} | {r['resumed']} | {r['executed_macs']:.3g} | "
                     f"{r['reused_macs']:.3g} | {saving} |")
    return "\n".join(lines)


def tables(doc: Mapping[str, Any]) -> str:
    """Every model's table of a ``search_efficiency.json`` (markdown), as ``report`` prints them."""
    return "\n\n".join(table(model, r) for model, r in doc["models"].items())
