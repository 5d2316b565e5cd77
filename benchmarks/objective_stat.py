"""Which statistic of the per-image train losses should the search minimise (issue 30, point 3)?

For each embedded model (``embedded:shapes``: the joint space; ``embedded:shapes-flux``: the dit space) and each
``--objective-stat`` (mean, p90, cvar) one search at an equal trial budget (``--trials``, no timeout, the same seed
and workers), then at each cost budget the front schedule a user would pick (the lowest train objective among
those costing at most the budget), scored on 64 (prompt, seed) pairs no search saw (:mod:`_unseen`): their mean,
median, p90, max and images over 0.05. Equal cost, equal trials: wall time is recorded with the load but not
compared (other jobs share the CPU).

Usage (writes ``benchmarks/results/objective_stat.json``)::

    python benchmarks/objective_stat.py [--trials 300] [--models embedded:shapes,embedded:shapes-flux]
        [--stats mean,p90,cvar] [--runs artifacts/runs/objective_stat] [--workers 2]

``--seed N`` searches with another seed (its results keyed ``<model> seed N``). Searches already in ``--runs``
are resumed (a finished one is only read). ``--merge A.json B.json ...`` combines
result files of separate invocations (e.g. one statistic each, on a loaded machine) into ``--out`` and recomputes
the summary; nothing is searched or scored again.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import RESULTS, ROOT, environment, repo_relative  # noqa: E402

BUDGETS = (0.3, 0.4, 0.5, 0.6, 0.75)
STATS = ("mean", "p90", "cvar")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def search(model: str, stat: str, *, trials: int, workers: int, runs: Path, cache_dir: str,
           seed: int = 0) -> dict[str, Any]:
    """One search at ``trials`` finished trials (resumed if it exists); returns its record."""
    from cachesearch.search import RunSettings, run_search

    name = f"{model.replace(':', '-')}-{stat}" + (f"-s{seed}" if seed else "")
    settings = RunSettings(name=name, model=model, objective_stat=stat, trials=trials, timeout=None, seed=seed,
                           workers=workers, out=str(runs))
    load0, t0 = _load(), time.monotonic()
    summary = run_search(settings, cache_dir=cache_dir, export=False)
    return {"run": repo_relative(settings.run_dir), "name": name, "sampler": settings.sampler,
            "trials": summary.trials_total,
            "completed": summary.completed, "screened": summary.screened, "duplicates": summary.duplicates,
            "seconds": round(time.monotonic() - t0, 1), "load_before": load0, "load_after": _load()}


def picks(name: str, runs: Path, cache_dir: str) -> list[dict[str, Any]]:
    """Per cost budget: the front trial with the lowest train objective costing at most the budget, replayed."""
    from cachesearch.search.export import _replay
    from cachesearch.search.run import open_run
    from cachesearch.search.study import pareto_trials

    prep = open_run(name, str(runs), cache_dir=cache_dir)
    front = [t for t in pareto_trials(prep.study) if t.values[1] < 1.0 - 1e-9]
    out, seen = [], {}
    for budget in BUDGETS:
        fits = [t for t in front if t.values[1] <= budget + 1e-12]
        if not fits:
            out.append({"budget": budget, "trial": None})
            continue
        t = min(fits, key=lambda t: (t.values[0], t.values[1]))
        if t.number not in seen:
            seen[t.number] = _replay(prep, t, name=f"{name}-t{t.number}")[1]
        out.append({"budget": budget, "trial": t.number, "cost": t.values[1], "train_objective": t.values[0],
                    "train_mean": t.user_attrs["result"]["quality"], "schedule": seen[t.number]})
    return out


def score(ev: Any, schedule: Any) -> dict[str, Any]:
    """The schedule on the unseen pairs: the distribution of its per-image losses."""
    res = ev.evaluate(schedule, split="heldout", measure=False)
    if not res.valid:
        return {"valid": False, "reason": res.reason}
    s = res.summary(threshold=0.05, interval=True)
    return {"valid": True, "n": s.n, "mean": s.mean, "ci95": list(s.ci95), "median": s.median, "p90": s.p90,
            "cvar": s.cvar, "max": s.max, "over_0.05": round(s.over * s.n), "losses": list(res.losses)}


def summarize(models: dict[str, Any]) -> dict[str, Any]:
    """Per model and statistic: geometric means over the budgets of unseen mean/p90/max relative to the mean
    objective's pick at the same budget (< 1: better), and images over 0.05 in total."""
    out: dict[str, Any] = {}
    for model, doc in models.items():
        if "mean" not in doc["stats"]:  # one statistic of a split run (--merge the files for the summary)
            continue
        base = {p["budget"]: p for p in doc["stats"]["mean"]["picks"] if p.get("unseen", {}).get("valid")}
        rows = {}
        for stat, sdoc in doc["stats"].items():
            ratios: dict[str, list[float]] = {"mean": [], "p90": [], "max": []}
            over = 0
            for p in sdoc["picks"]:
                u, b = p.get("unseen", {}), base.get(p["budget"], {}).get("unseen", {})
                if not (u.get("valid") and b.get("valid")):
                    continue
                over += u["over_0.05"]
                for k in ratios:
                    if b[k] > 0 and u[k] > 0:
                        ratios[k].append(u[k] / b[k])
            rows[stat] = {f"{k}_ratio_geomean": (math.exp(sum(map(math.log, v)) / len(v)) if v else None)
                          for k, v in ratios.items()} | {"images_over_0.05": over}
        out[model] = rows
    return out


def tables(doc: dict[str, Any]) -> str:
    lines = []
    for model, mdoc in doc["models"].items():
        lines += [f"## {model}", "", "| stat | budget | trial | cost | unseen mean | median | p90 | max | > 0.05 |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for stat, sdoc in mdoc["stats"].items():
            for p in sdoc["picks"]:
                u = p.get("unseen") or {}
                if not u.get("valid"):
                    lines.append(f"| {stat} | {p['budget']} | – | – | – | – | – | – | – |")
                    continue
                lines.append(f"| {stat} | {p['budget']} | {p['trial']} | {p['cost']:.3f} | {u['mean']:.4f} | "
                             f"{u['median']:.4f} | {u['p90']:.4f} | {u['max']:.4f} | {u['over_0.05']} / {u['n']} |")
        lines.append("")
    lines += ["| model | stat | mean ratio | p90 ratio | max ratio | images > 0.05 (all budgets) |",
              "|---|---|---:|---:|---:|---:|"]
    for model, rows in doc["summary"].items():
        for stat, r in rows.items():
            f = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
            lines.append(f"| {model} | {stat} | {f(r['mean_ratio_geomean'])} | {f(r['p90_ratio_geomean'])} | "
                         f"{f(r['max_ratio_geomean'])} | {r['images_over_0.05']} |")
    return "\n".join(lines)


def merge(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """One result document from several (the same budgets, trials and unseen pairs per model; later files add
    statistics and models), with its summary recomputed; ``seconds`` add up."""
    out = {**docs[0], "models": {}, "merged_from": len(docs)}
    for d in docs:
        if d["budgets"] != out["budgets"] or d["config"]["trials"] != out["config"]["trials"]:
            raise ValueError("--merge: the files differ in budgets or trials")
        for model, mdoc in d["models"].items():
            into = out["models"].setdefault(model, {"unseen_prompts": mdoc["unseen_prompts"], "stats": {}})
            if into["unseen_prompts"] != mdoc["unseen_prompts"]:
                raise ValueError(f"--merge: {model} was scored on different unseen pairs")
            into["stats"].update(mdoc["stats"])
    for mdoc in out["models"].values():  # the mean objective first: the summary's ratios are to it
        mdoc["stats"] = dict(sorted(mdoc["stats"].items(), key=lambda kv: STATS.index(kv[0])))
    out["summary"] = summarize(out["models"])
    out["seconds"] = round(sum(d["seconds"] for d in docs), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="embedded:shapes,embedded:shapes-flux")
    p.add_argument("--stats", default=",".join(STATS))
    p.add_argument("--trials", type=int, default=300, help="finished trials per search (equal for every stat)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--runs", type=Path, default=ROOT / "artifacts" / "runs" / "objective_stat")
    p.add_argument("--cache-dir", default=str(ROOT / ".cache" / "cachesearch"))
    p.add_argument("--n-unseen", type=int, default=64)
    p.add_argument("--seed", type=int, default=0,
                   help="search seed; other than 0 the results are keyed '<model> seed <N>' (merge them with --merge)")
    p.add_argument("--out", type=Path, default=RESULTS / "objective_stat.json")
    p.add_argument("--merge", type=Path, nargs="+", default=None, help="combine these result files into --out")
    args = p.parse_args(argv)
    if args.merge:
        import json

        from _bench import write_json

        doc = merge([json.loads(f.read_text(encoding="utf-8")) for f in args.merge])
        write_json(args.out, doc)
        print(tables(doc))
        return 0
    import torch
    from _bench import write_json
    from _unseen import unseen_evaluator
    from diffusers.utils import logging as diffusers_logging

    torch.set_num_threads(1)
    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    doc: dict[str, Any] = {"benchmark": "objective_stat", "environment": environment("cpu"), "budgets": list(BUDGETS),
                           "config": {"trials": args.trials, "workers": args.workers, "seed": args.seed,
                                      "n_unseen": args.n_unseen, "runs": repo_relative(args.runs)}, "models": {}}
    t0 = time.perf_counter()
    for model in args.models.split(","):
        ev = unseen_evaluator(model, args.runs, n=args.n_unseen, cache_dir=args.cache_dir)
        mdoc: dict[str, Any] = {"unseen_prompts": ev.prompt_set("heldout").digest(), "stats": {}}
        for stat in args.stats.split(","):
            _log(f"[{model} {stat}] search, {args.trials} trials")
            rec = search(model, stat, trials=args.trials, workers=args.workers, runs=args.runs,
                         cache_dir=args.cache_dir, seed=args.seed)
            chosen = picks(rec["name"], args.runs, args.cache_dir)
            scored: dict[int, dict[str, Any]] = {}
            for c in chosen:
                sched = c.pop("schedule", None)
                if sched is None:
                    continue
                if c["trial"] not in scored:
                    scored[c["trial"]] = score(ev, sched)
                    _log(f"  budget {c['budget']}: trial {c['trial']} cost {c['cost']:.3f} unseen "
                         f"mean {scored[c['trial']].get('mean')} p90 {scored[c['trial']].get('p90')}")
                c["unseen"] = scored[c["trial"]]
            mdoc["stats"][stat] = {"search": rec, "picks": chosen}
        doc["models"][model if not args.seed else f"{model} seed {args.seed}"] = mdoc
    doc["summary"] = summarize(doc["models"])
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    write_json(args.out, doc)
    print(tables(doc))
    _log(f"wrote {repo_relative(args.out)} in {doc['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
