"""Fronts with and without the runtime families at equal trials (issue 27, point 4).

Two ``cachesearch run`` directories of the same model, steps, prompts, seed and trial budget: one searched the
default ``dit`` space (static families + the runtime families: diffusers' FirstBlockCache, MagCache, PAB,
FasterCache and cache-dit's DBCache), the other the same space without them
(``benchmarks/spaces/dit_static.yaml``). From each run's export (``schedules/index.yaml``: every front schedule
validated on the held-out prompts): the trial counts (from the journals), the front, the hypervolume of (held-out
loss, cost) up to (``--hv-ref-loss``, 1) — cost is the search's objective, the train images' cost ratio (a runtime
schedule's counted from what executed; also given with its held-out cost) —, the best held-out loss at a few costs
(chosen by train loss), which runtime schedules enter the front, and the with-run's table of each family's best
schedule at cost 0.3 / 0.5 / 0.7.

Usage (writes ``benchmarks/results/runtime_families.json``)::

    cachesearch run --model embedded:shapes-flux --steps 20 --trials 300 --timeout 0 --workers 1 \\
        --name flux-dit-runtime-300
    cachesearch run --model embedded:shapes-flux --steps 20 --trials 300 --timeout 0 --workers 1 \\
        --space benchmarks/spaces/dit_static.yaml --name flux-dit-static-300
    python benchmarks/runtime_families.py --with artifacts/runs/flux-dit-runtime-300 \\
        --without artifacts/runs/flux-dit-static-300
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import repo_relative  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
COSTS = (0.3, 0.5, 0.7)


def hypervolume(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area dominated by (loss, cost) ``points`` (both minimised) inside the box up to ``ref``."""
    hv, best_c = 0.0, ref[1]
    for q, c in sorted((min(q, ref[0]), min(c, ref[1])) for q, c in points):
        hv, best_c = (hv + (ref[0] - q) * (best_c - c), c) if c < best_c else (hv, best_c)
    return hv


def trial_counts(run_dir: Path) -> dict[str, Any]:
    """Trials the run's Optuna journal created and finished (op codes 4 CREATE_TRIAL, 6 SET_TRIAL_STATE_VALUES
    with a finished state), and the seconds from each trial's start to its end summed over the finished ones
    (``trial_seconds``: the search's evaluation time, without loading, profiling and export); ``None`` without a
    journal."""
    journal = run_dir / "study.journal"
    if not journal.is_file():
        return {"created": None, "finished": None, "failed": None, "trial_seconds": None}
    import json
    from datetime import datetime

    created = finished = failed = 0
    started: dict[int, datetime] = {}
    seconds = 0.0
    for line in journal.open():
        rec = json.loads(line)
        created += rec.get("op_code") == 4
        if rec.get("op_code") != 6:
            continue
        if rec.get("datetime_start"):
            started[rec["trial_id"]] = datetime.fromisoformat(rec["datetime_start"])
        if rec.get("state") in (1, 2, 3):  # COMPLETE, PRUNED, FAIL
            finished += 1
            failed += rec["state"] == 3
            if rec.get("datetime_complete") and rec.get("trial_id") in started:
                seconds += (datetime.fromisoformat(rec["datetime_complete"]) - started[rec["trial_id"]]).total_seconds()
    return {"created": created, "finished": finished, "failed": failed, "trial_seconds": round(seconds, 1)}


def load_run(run_dir: Path) -> dict[str, Any]:
    """A run's exported front and settings."""
    index = yaml.safe_load((run_dir / "schedules" / "index.yaml").read_text())
    settings = yaml.safe_load((run_dir / "run.yaml").read_text())["settings"]
    return {"dir": run_dir, "index": index, "settings": settings}


def _family(entry: dict[str, Any]) -> str:
    policy = entry.get("policy") or {}
    kind = policy.get("kind")
    if kind == "diffusers":
        return {"FirstBlockCacheConfig": "fbcache", "MagCacheConfig": "magcache", "FasterCacheConfig": "fastercache",
                "PyramidAttentionBroadcastConfig": "pab", "SeaCacheConfig": "seacache"}.get(
            (policy.get("config") or {}).get("method"), "diffusers")
    if kind == "cachedit":
        return "dbcache"
    if kind == "joint":
        return (policy.get("mask") or {}).get("kind", "joint")
    return str(kind)


def summarize(run: dict[str, Any], ref_loss: float) -> dict[str, Any]:
    """Trials, front, hypervolume and best held-out loss at ``COSTS`` of one run."""
    entries = [e for e in run["index"]["schedules"] if (e.get("quality") or {}).get("heldout") is not None]
    pts = [(e["quality"]["heldout"], e["objective"]) for e in entries]
    held_cost = [(e["quality"]["heldout"], e.get("cost_heldout") or e["objective"]) for e in entries]
    at: dict[str, Any] = {}
    for c in COSTS:
        ok = [e for e in entries if e["objective"] <= c + 1e-9]
        best = min(ok, key=lambda e: (e["quality"]["train"], e["objective"]), default=None)
        at[str(c)] = None if best is None else {"file": best["file"], "kind": best.get("kind", "static"),
                                                 "family": _family(best), "cost": best["objective"],
                                                 "train": best["quality"]["train"],
                                                 "heldout": best["quality"]["heldout"]}
    return {
        "run": repo_relative(run["dir"]), "space": run["settings"]["space"], "trials": trial_counts(run["dir"]),
        "front_size": len(entries),
        "front_kinds": {k: sum(e.get("kind", "static") == k for e in entries) for k in ("static", "runtime")},
        "hypervolume": hypervolume(pts, (ref_loss, 1.0)),
        "hypervolume_heldout_cost": hypervolume(held_cost, (ref_loss, 1.0)),
        "best_at_cost": at,
    }


def compare(with_dir: Path, without_dir: Path, ref_loss: float = 0.1) -> dict[str, Any]:
    """The comparison document (see the module docstring)."""
    w, wo = load_run(with_dir), load_run(without_dir)
    keys = ("model", "steps", "n_train", "n_heldout", "heldout_max", "profile_prompts", "seed", "sampler",
            "population", "metric", "trials")
    differ = {k: (w["settings"].get(k), wo["settings"].get(k)) for k in keys
              if w["settings"].get(k) != wo["settings"].get(k)}
    doc: dict[str, Any] = {"benchmark": "runtime_families", "ref": [ref_loss, 1.0],
                           "settings": {k: w["settings"].get(k) for k in keys}, "settings_differ": differ,
                           "with_runtime": summarize(w, ref_loss), "without_runtime": summarize(wo, ref_loss)}
    a, b = doc["with_runtime"]["trials"]["finished"], doc["without_runtime"]["trials"]["finished"]
    doc["equal_trials"] = a is not None and b is not None and abs(a - b) <= 0.05 * max(a, b)
    hv_w, hv_wo = doc["with_runtime"]["hypervolume"], doc["without_runtime"]["hypervolume"]
    doc["hypervolume_ratio_with_over_without"] = hv_w / hv_wo if hv_wo > 0 else None
    doc["runtime_on_front"] = [
        {"file": e["file"], "family": _family(e), "trial": e["trial"], "baseline": e.get("baseline"),
         "cost": e["objective"], "cost_heldout": e.get("cost_heldout"), "train": e["quality"]["train"],
         "heldout": e["quality"]["heldout"], "policy": e.get("policy")}
        for e in w["index"]["schedules"] if e.get("kind") == "runtime"]
    doc["families"] = w["index"].get("families", [])
    return doc


def _fmt(v: Any, spec: str = ".4g") -> str:
    return "-" if v is None else format(v, spec) if isinstance(v, (int, float)) else str(v)


def tables(doc: dict[str, Any]) -> str:
    """Markdown: the two runs, the runtime schedules on the front, the per-family table."""
    lines = ["| space | run | trials | front (static + runtime) | hypervolume | "
             + " | ".join(f"best held-out @ <= {c}" for c in COSTS) + " |",
             "|---|---|---:|---:|---:|" + "---|" * len(COSTS)]
    for key in ("with_runtime", "without_runtime"):
        r = doc[key]
        cells = []
        for c in COSTS:
            b = r["best_at_cost"][str(c)]
            cells.append("-" if b is None else f"{_fmt(b['heldout'])} ({b['family']}, {_fmt(b['cost'], '.3f')})")
        kinds = f"({r['front_kinds']['static']} + {r['front_kinds']['runtime']})"
        lines.append(f"| {r['space']} | {r['run']} | {r['trials']['finished']} | {r['front_size']} {kinds} | "
                     f"{_fmt(r['hypervolume'], '.5f')} | " + " | ".join(cells) + " |")
    lines += ["", "| runtime schedule on the front | family | cost (train) | cost (held-out) | train | held-out |",
              "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['file']} | {r['family']} | {_fmt(r['cost'], '.3f')} | {_fmt(r['cost_heldout'], '.3f')} | "
              f"{_fmt(r['train'])} | {_fmt(r['heldout'])} |" for r in doc["runtime_on_front"]] or ["| (none) |||||"]
    costs = sorted({f["max_cost"] for f in doc["families"]})
    rows: dict[tuple[str, str], dict[float, Any]] = {}
    for f in doc["families"]:
        rows.setdefault((f["family"], f["kind"]), {})[f["max_cost"]] = f
    lines += ["", "| family | kind | " + " | ".join(f"<= {c:g}: held-out (train, cost) t#" for c in costs) + " |",
              "|---|---|" + "---|" * len(costs)]
    for (family, kind), cells in rows.items():
        out = []
        for c in costs:
            f = cells.get(c) or {}
            out.append("-" if f.get("trial") is None else
                       f"{_fmt(f.get('heldout'))} ({_fmt(f.get('train'))}, {_fmt(f.get('cost'), '.3f')}) "
                       f"t{f['trial']}")
        lines.append(f"| {family} | {kind} | " + " | ".join(out) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, compare, print the tables and write the JSON; returns the exit code."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--with", dest="with_dir", type=Path, required=True, help="run directory with runtime families")
    p.add_argument("--without", dest="without_dir", type=Path, required=True, help="run directory without them")
    p.add_argument("--hv-ref-loss", type=float, default=0.1, help="hypervolume reference loss (cost ref: 1.0)")
    p.add_argument("--load", default=None, help="machine load recorded with the runs (uptime), for the record")
    p.add_argument("--note", default=None, help="anything else the record needs (how the runs were made)")
    p.add_argument("--out", type=Path, default=RESULTS / "runtime_families.json")
    args = p.parse_args(argv)
    from _bench import environment, write_json

    doc = compare(args.with_dir, args.without_dir, args.hv_ref_loss)
    doc["environment"] = environment("cpu")
    doc["load"] = args.load
    doc["note"] = args.note
    write_json(args.out, doc)
    print(tables(doc))
    print(f"wrote {repo_relative(args.out)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
