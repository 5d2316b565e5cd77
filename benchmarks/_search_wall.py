"""The ``prefix`` and ``wall`` modes of ``search_efficiency.py``.

``prefix``: searches of the ``ecad`` space and a components-only space on ``embedded:shapes-flux`` and of the
DeepCache family (``deepcache`` space) on ``embedded:shapes``, with exact prefix sharing: the share of the
denoiser MACs an independent evaluation of each candidate would execute that came from an earlier candidate's
prefix instead (exact, so it is the saving).

``wall``: issue 28's target, on the wall clock: for every model and seed, ``cachesearch run`` with today's
default settings pinned and ``--timeout 330``, then the new defaults with ``--timeout 80`` (``--workers 2``
both, the default), one after the other in subprocesses on the same machine with the same reference cache.
Both exported fronts are re-scored on one common held-out set; the table gives each run's hypervolume and its
exported front's median held-out / train loss ratio, and the medians over seeds. Run it on a quiet machine.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks._efficiency import SHARED, TODAY, hypervolume, trial_records

REPO = Path(__file__).resolve().parents[1]
NEW_ARMS: dict[str, list[str]] = {
    "new": [],  # this checkout's defaults
    "new-nsga2": ["--sampler", "nsga2"],
    "new-tpe": ["--sampler", "tpe"],
    "new-screen2,4": ["--screen", "2,4"],  # cheaper screening: 2 images, then 4, then all 8
    "new-train4": ["--n-train", "4", "--screen", "2"],  # 4 train images, screened on 2
    "new-random": ["--sampler", "random"],
    "new-gp": ["--sampler", "gp"],  # Optuna's GPSampler
    "new-grid": ["--warm-start", "grid"],  # the baselines and a small Latin hypercube per family first
    # `cachesearch run --timeout 80` as shipped: TPE, with the workers started while the run prepares (the arms
    # above ran before that change: their workers started inside the 80 s)
    "default": [],
    # the same, after the perceptual metric kept its reference batches' features (the trunk runs on the candidates
    # only: about 8 % more trials in the same time on this CPU)
    "default-refcache": [],
    # the crossed warm start (the baselines on the baselines' front combined with the step-set baselines; shapes:
    # measured, not kept)
    "crossed": ["--warm-start", "crossed"],
    # the shipped default after the middle cache's baselines gained MagCache's layout (front 0; the dit space)
    "magcache-layout": [],
}
"""The ``wall`` arms run at ``--new-timeout``: their flags on top of ``cachesearch run``'s defaults."""


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3])


def _components_space(work: Path) -> Path:
    """The default dit space with the components family only (ECAD-like masks in their compact, periodic form)."""
    doc = yaml.safe_load((REPO / "search_spaces" / "dit.yaml").read_text(encoding="utf-8"))
    doc["name"] = "components"
    doc["description"] = "The dit space's per-component periodic masks alone (search_efficiency.py prefix)."
    doc["mask"] = {"families": ["components"], "components": doc["mask"]["components"]}
    doc["baselines"] = {k: v for k, v in doc["baselines"].items() if k == "components"}
    path = work / "components.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def prefix_runs(args: Any) -> None:
    import optuna
    import torch

    from benchmarks._bench import environment, write_and_say
    from cachesearch.search import RunSettings, run_search
    from cachesearch.search.study import open_storage

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cases = [("embedded:shapes-flux", "ecad", REPO / "search_spaces" / "ecad.yaml"),
             ("embedded:shapes-flux", "components", _components_space(args.work)),
             ("embedded:shapes", "deepcache", REPO / "search_spaces" / "deepcache.yaml")]
    rows = {}
    for model, label, space in cases:
        name = f"prefix-{label}-s{args.seed}"
        settings = RunSettings(name=name, model=model, space=str(space), seed=args.seed, trials=args.trials,
                               timeout=None, workers=1, out=str(args.work / "runs-prefix"), **SHARED)
        load0, t0 = _load(), time.time()
        run_search(settings, cache_dir=str(args.work / "cache"), export=False, space_given=True)
        study = optuna.load_study(study_name=name, storage=open_storage(str(settings.run_dir / "study.journal")))
        recs = [r for r in trial_records(study) if r["kind"] in ("evaluated", "screened")]
        executed, reused = sum(r["macs"] for r in recs), sum(r["reused"] for r in recs)
        rows[label] = {"model": model, "space": space.name, "trials": args.trials, "candidates": len(recs),
                       "resumed": sum(r["reused"] > 0 for r in recs), "executed_macs": executed,
                       "reused_macs": reused, "saving": reused / (executed + reused) if recs else None,
                       "wall_s": round(time.time() - t0, 1), "load": [load0, _load()]}
        r = rows[label]
        print(f"{label:12} {model:22} {r['candidates']:4} candidates, {r['resumed']:4} resumed from a prefix, "
              f"saving {r['saving']:.1%} of the denoiser MACs", flush=True)
    write_and_say(args.out, {"benchmark": "prefix_sharing", "environment": environment("cpu"), "settings": SHARED,
                             "seed": args.seed, "cases": rows})


def _cli(model: str, name: str, seed: int, work: Path, extra: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, "-c", "from cachesearch.cli import main; main()", "run", "--model", model, "--name",
           name, "--seed", str(seed), "--out", str(work / "runs"), "--cache-dir", str(work.parent / "cache"),
           "--quiet", *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    load0, t0 = _load(), time.time()
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed (rc {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    command = " ".join(cmd[3:]).replace(str(work.parent), "<work>")  # no machine paths in results
    return {"wall_s": round(time.time() - t0, 1), "load": [load0, _load()], "command": command}


def _arm_result(run_dir: Path, rescorer: Any) -> dict[str, Any]:
    from cachesearch.schedule import load_schedule
    from cachesearch.search.objective import mask_key

    index = yaml.safe_load((run_dir / "schedules" / "index.yaml").read_text(encoding="utf-8"))
    rows = index["schedules"]
    held = []
    for row in rows:
        schedule = load_schedule(run_dir / "schedules" / row["file"])
        held.append(rescorer.loss(mask_key(schedule), lambda ev, s=schedule: s))
    ratios = [r["quality"]["heldout"] / r["quality"]["train"] for r in rows
              if r["quality"]["train"] and r["quality"]["heldout"] is not None]
    return {"front": len(rows), "hv": hypervolume(held),
            "ratio_median": statistics.median(ratios) if ratios else None, **baseline_ratio(index)}


def baseline_ratio(index: dict[str, Any]) -> dict[str, Any]:
    """The median held-out/train loss ratio of the validated baselines in an exported ``index.yaml``: fixed
    schedules no search selected, so their ratio is what the train and held-out prompts alone give (a front's
    ratio above it is overfitting)."""
    ratios = [b["heldout"] / b["quality"] for b in index["baselines"]["validated"]
              if b.get("heldout") is not None and b.get("quality")]
    return {"baseline_ratio_median": statistics.median(ratios) if ratios else None}


def wall_summary(per: dict[str, Any], arms: list[str]) -> None:
    """Per arm of one model's ``runs``: seeds, median hypervolume, wall time and held-out/train ratio (of the front
    and of the run's unsearched baselines); for every arm but ``today``, whether it ``met`` issue 28's target (median
    HV ≥ today's, median front ratio ≤ 1.2)."""
    for arm in arms:
        mine = [r for r in per["runs"] if r["arm"] == arm]
        if mine:
            per[arm] = {"seeds": len(mine), "hv_median": statistics.median(r["hv"] for r in mine),
                        "wall_median": statistics.median(r["wall_s"] for r in mine),
                        "ratio_median": statistics.median(r["ratio_median"] for r in mine if r["ratio_median"])}
            base = [r["baseline_ratio_median"] for r in mine if r.get("baseline_ratio_median")]
            per[arm]["baseline_ratio_median"] = statistics.median(base) if base else None
    for arm in arms:
        if arm != "today" and arm in per and "today" in per:
            per[arm]["met"] = per[arm]["hv_median"] >= per["today"]["hv_median"] and per[arm]["ratio_median"] <= 1.2


def wall_runs(args: Any, rescorer_class: Any) -> None:
    from benchmarks._bench import environment, write_and_say

    today = ["--sampler", TODAY["sampler"], "--population", str(TODAY["population"]), "--screen", TODAY["screen"],
             "--n-train", str(TODAY["n_train"]), "--warm-start", TODAY["warm_start"], "--prefix-cache-mb", "0",
             "--trials", "1000", "--timeout", f"{args.today_timeout:g}"]
    every = {"today": today, **{arm: [*extra, "--timeout", f"{args.new_timeout:g}"] for arm, extra in NEW_ARMS.items()}}
    arms = {arm: [*every[arm], "--n-heldout-max", str(args.n_heldout_max)] for arm in args.arms}
    work = args.work / "wall"
    # Runs already measured (same arm, model, seed) are kept: an interrupted benchmark resumes where it stopped,
    # and a later call with other arms adds them to the same table.
    old = json.loads(args.out.read_text(encoding="utf-8")) if args.out.is_file() else {}
    results: dict[str, Any] = {m: {"runs": list(per.get("runs", []))} for m, per in (old.get("models") or {}).items()}
    results.update({m: results.get(m, {"runs": []}) for m in args.models})
    described = {**old.get("arms", {}), **{k: " ".join(v) for k, v in arms.items()}}
    every_arm = list(described)

    def save() -> None:
        for per in results.values():
            wall_summary(per, every_arm)
        write_and_say(args.out, {"benchmark": "search_efficiency_wall", "environment": environment("cpu"),
                                 "heldout": args.heldout, "arms": described, "models": results})

    for model in args.models:
        rescorer = rescorer_class(model, args.work, args.heldout)
        per = results[model]
        for seed in args.seeds:
            for arm, extra in arms.items():
                if any(r["arm"] == arm and r["seed"] == seed for r in per["runs"]):
                    continue
                name = f"{model.split(':')[-1]}-{arm}-s{seed}"
                print(f"{name}: cachesearch run {' '.join(extra)} (load {_load()})", flush=True)
                info = _cli(model, name, seed, work, extra)
                got = {"arm": arm, "seed": seed, "name": name, **info, **_arm_result(work / "runs" / name, rescorer)}
                per["runs"].append(got)
                print(f"  {got['wall_s']} s, front {got['front']}, HV {got['hv']:.3f}, held-out/train "
                      f"{got['ratio_median']}", flush=True)
                save()
    save()  # also summarises every model's arms, for the table below
    print(f"\n{'model':24}{'arm':10}{'seeds':>6}{'HV median':>11}{'held-out/train':>16}  met")
    for model, per in results.items():
        for arm in every_arm:
            if arm in per:
                a = per[arm]
                print(f"{model:24}{arm:10}{a['seeds']:>6}{a['hv_median']:>11.3f}{a['ratio_median']:>16.3f}  "
                      f"{a.get('met', '')}")


def wall_table(doc: dict[str, Any]) -> str:
    """The markdown table of a ``wall`` result: per model and arm, each seed's run, then the medians."""
    lines = ["| model | arm | seeds | wall s (each seed) | front | hypervolume (each seed) | median HV | "
             "held-out / train (median) | the same, unsearched baselines | meets the target |",
             "|---|---|---:|---|---|---|---:|---:|---:|---|"]
    for model, per in doc["models"].items():
        for arm in doc["arms"]:
            runs = sorted((r for r in per["runs"] if r["arm"] == arm), key=lambda r: r["seed"])
            if not runs or arm not in per:
                continue
            a = per[arm]
            met = "–" if arm == "today" else ("yes" if a.get("met") else "no")
            walls = ", ".join(format(r["wall_s"], ".0f") for r in runs)
            fronts = ", ".join(str(r["front"]) for r in runs)
            hvs = ", ".join(format(r["hv"], ".3f") for r in runs)
            base = "–" if a.get("baseline_ratio_median") is None else format(a["baseline_ratio_median"], ".3f")
            lines.append(f"| {model} | {arm} | {a['seeds']} | {walls} | {fronts} | {hvs} | {a['hv_median']:.3f} | "
                         f"{a['ratio_median']:.3f} | {base} | {met} |")
    return "\n".join(lines)
