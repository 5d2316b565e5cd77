"""Search throughput side by side: the no-argument ``cachesearch run`` of an earlier release vs this checkout.

    python benchmarks/search_throughput.py [--baseline-rev 8794258] [--out benchmarks/results/search_throughput.json]

Each arm runs ``cachesearch run`` with no search option (only its own ``--name``, ``--out`` and a fresh
``--cache-dir``, so each generates its own references) in a subprocess, one after the other on the same
machine. The earlier release is checked out with ``git worktree`` and run from its own ``src/``. Reported per
arm, from its study and its exported front:

* distinct candidates per minute of the search phase (every trial that evaluated a mask, baselines included:
  COMPLETE trials plus candidates screened out on their first images; duplicates of an evaluated mask excluded);
* the time split: preparation (model, references, profile, before the first trial), candidate compute
  (worker-seconds inside trials), search overhead (search-phase wall time x workers minus candidate compute:
  ask/tell, the sampler, idle workers) and export (held-out validation, files, report);
* front quality for the same wall time: both exported fronts re-scored by this checkout's evaluator on one common
  held-out set (``--heldout`` images), and the hypervolume of (held-out loss, cost ratio) against the reference
  point (``--ref-loss``, 1.0) -- the same images and metric for both arms, whatever their own ``--n-heldout``;
* each arm's own held-out / train loss ratio over its exported front (median, share within 20 %).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))


def _run_arm(src: Path, name: str, root: Path, extra: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, "-c", "from cachesearch.cli import main; main()", "run", "--name", name,
           "--out", str(root / "runs"), "--cache-dir", str(root / f"cache-{name}"), "--quiet", *extra]
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return {"wall_s": wall, "started": t0, "stdout_tail": proc.stdout[-1500:]}


def _study_stats(run_dir: Path, name: str, started: float, wall: float) -> dict[str, Any]:
    import optuna
    from optuna.trial import TrialState

    from cachesearch.search.study import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=open_storage(str(run_dir / "study.journal")))
    trials = [t for t in study.get_trials(deepcopy=False) if t.datetime_start and t.datetime_complete]
    evaluated = [t for t in trials if "duplicate_of" not in t.user_attrs and (
        t.state == TrialState.COMPLETE or "screened" in t.user_attrs)]
    first = min(t.datetime_start.timestamp() for t in trials)
    last = max(t.datetime_complete.timestamp() for t in trials)
    search_s = last - first
    workers = max(1, len({t.user_attrs["worker"]["pid"] for t in trials if t.user_attrs.get("worker")}))
    compute = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in evaluated)
    dup_s = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in trials
                if "duplicate_of" in t.user_attrs)
    return {
        "trials": len(trials),
        "distinct_candidates": len(evaluated),
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "screened_out": sum("screened" in t.user_attrs and "duplicate_of" not in t.user_attrs for t in trials),
        "duplicates": sum("duplicate_of" in t.user_attrs for t in trials),
        "failed": sum(t.state == TrialState.FAIL for t in trials),
        "workers": workers,
        "search_s": round(search_s, 1),
        "candidates_per_min": round(60 * len(evaluated) / search_s, 2),
        "split_s": {
            "preparation": round(first - started, 1),
            "candidate_compute": round(compute, 1),
            "duplicates": round(dup_s, 1),
            "search_overhead": round(search_s * workers - compute - dup_s, 1),
            "export": round(started + wall - last, 1),
        },
    }


def _front_rows(run_dir: Path) -> list[dict[str, Any]]:
    doc = yaml.safe_load((run_dir / "schedules" / "index.yaml").read_text(encoding="utf-8"))
    return doc["schedules"]


def _hypervolume(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area dominated by ``points`` (both minimised) inside the box up to ``ref``."""
    pts = sorted((min(q, ref[0]), min(c, ref[1])) for q, c in points)
    hv, best_c = 0.0, ref[1]
    for q, c in pts:
        if c < best_c:
            hv += (ref[0] - q) * (best_c - c)
            best_c = c
    return hv


def _rescore(run_dirs: dict[str, Path], heldout: int) -> dict[str, list[tuple[float, float]]]:
    """Every exported schedule of every arm on one held-out set of ``heldout`` images (this checkout)."""
    import cachesearch as cs
    from cachesearch.evaluate import EvalConfig, Evaluator

    out: dict[str, list[tuple[float, float]]] = {}
    ev = None
    for arm, run_dir in run_dirs.items():
        pts = []
        for row in _front_rows(run_dir):
            sched = cs.load_schedule(run_dir / "schedules" / row["file"])
            if ev is None:
                steps = sched.reference.num_inference_steps if sched.reference else 20
                ev = Evaluator(EvalConfig(model=sched.model.source, num_inference_steps=steps, n_train=1,
                                          n_heldout=heldout, cache_dir=str(run_dir.parent.parent / "cache-rescore")))
            res = ev.evaluate(sched, split="heldout")
            pts.append((float(res.quality), float(res.cost_ratio)))
        out[arm] = pts
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline-rev", default="8794258", help="git revision of the earlier release")
    ap.add_argument("--heldout", type=int, default=16, help="common held-out images for the front comparison")
    ap.add_argument("--ref-loss", type=float, default=0.1, help="hypervolume reference loss")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "search_throughput.json")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--arm-args", default="", help="extra `cachesearch run` arguments for both arms (testing)")
    args = ap.parse_args(argv)
    import torch

    from benchmarks._bench import environment

    root = Path(args.work or tempfile.mkdtemp(prefix="cs-throughput-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    old = root / "baseline-src"
    if not old.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(old), args.baseline_rev],
                       check=True, capture_output=True)
    rev_new = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True,
                             text=True).stdout.strip()
    arms = {"baseline": (old / "src", f"tp-baseline-{args.baseline_rev}"), "current": (REPO / "src", "tp-current")}
    extra = args.arm_args.split()
    results: dict[str, Any] = {}
    try:
        for arm, (src, name) in arms.items():
            print(f"[{arm}] cachesearch run --name {name} (from {src})", flush=True)
            saved = root / f"{name}.arm.json"  # an arm already run in this --work folder is not run again
            if saved.is_file():
                info = json.loads(saved.read_text(encoding="utf-8"))
            else:
                info = _run_arm(src, name, root, extra)
                saved.write_text(json.dumps(info), encoding="utf-8")
            stats = _study_stats(root / "runs" / name, name, info["started"], info["wall_s"])
            rows = _front_rows(root / "runs" / name)
            ratios = [r["quality"]["heldout"] / r["quality"]["train"] for r in rows
                      if r["quality"]["train"] and r["quality"]["heldout"] is not None]
            results[arm] = {"revision": args.baseline_rev if arm == "baseline" else rev_new,
                            "wall_s": round(info["wall_s"], 1), **stats, "front_size": len(rows),
                            "heldout_train_ratio_median": round(statistics.median(ratios), 3) if ratios else None,
                            "within_20pct": f"{sum(0.8 <= r <= 1.2 for r in ratios)}/{len(ratios)}",
                            "stdout_tail": info["stdout_tail"].replace(str(root), "<work>")
                            .replace(str(REPO), "<repo>")}
            print(json.dumps({k: v for k, v in results[arm].items() if k != "stdout_tail"}, indent=1), flush=True)
        torch.set_num_threads(1)
        pts = _rescore({arm: root / "runs" / name for arm, (_, name) in arms.items()}, args.heldout)
        for arm in arms:
            results[arm]["front_common_heldout"] = [[round(q, 6), round(c, 4)] for q, c in pts[arm]]
            results[arm]["hypervolume"] = round(_hypervolume(pts[arm], (args.ref_loss, 1.0)), 6)
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)], capture_output=True)
    b, c = results["baseline"], results["current"]
    summary = {
        "candidates_per_min_ratio": round(c["candidates_per_min"] / b["candidates_per_min"], 2),
        "hypervolume_ratio": round(c["hypervolume"] / b["hypervolume"], 3) if b["hypervolume"] else None,
    }
    doc = {"benchmark": "search_throughput", "environment": environment("cpu"), "heldout_images": args.heldout,
           "ref_point": [args.ref_loss, 1.0], "arms": results, "summary": summary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"\n{'':28}{'baseline':>14}{'current':>14}")
    for key in ("wall_s", "distinct_candidates", "candidates_per_min", "screened_out", "duplicates", "workers",
                "hypervolume", "heldout_train_ratio_median", "within_20pct"):
        print(f"{key:28}{b[key]!s:>14}{c[key]!s:>14}")
    for key in b["split_s"]:
        print(f"{'time: ' + key:28}{b['split_s'][key]!s:>14}{c['split_s'][key]!s:>14}")
    print(json.dumps(summary))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
