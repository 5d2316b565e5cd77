"""Search efficiency (issue 28): the front's hypervolume as a function of the compute a search spent.

    python benchmarks/search_efficiency.py run --model embedded:shapes --configs today new --seeds 0 1 2
    python benchmarks/search_efficiency.py report            # curves, table, results/search_efficiency.json/.png
    python benchmarks/search_efficiency.py prefix            # prefix sharing's saving on ecad, components, DeepCache
    python benchmarks/search_efficiency.py wall --seeds 0 1 2  # `cachesearch run --timeout 80` (new) vs 330 (old)
    python benchmarks/search_efficiency.py curves            # the curves and table of the wall runs (full scale)

``run`` searches in this process (``--workers 1`` by default: one candidate at a time, so a run's first trials
are exactly what a shorter run would have done) and stops at ``--trials`` or once the candidates executed
``--budget`` times the compute of the ``today`` runs of that model. Compute is denoiser MACs that executed
(:mod:`benchmarks._efficiency`), which carries over to GPU time; wall time is recorded too, with ``uptime``'s
load (on a shared machine it is distorted, compute is not). ``report`` rebuilds each run's train front at
compute checkpoints, re-scores every front schedule on one common held-out set (``--heldout`` images, the same
for every configuration) and measures the hypervolume of (log10 held-out loss, cost ratio) up to (0.5, 1.05).
Its table gives the compute each configuration needs to reach 90 / 95 / 100 % of ``today``'s final
hypervolume (median over seeds; ``today`` is the default before issue 28, pinned in ``CONFIGS``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from benchmarks._efficiency import (  # noqa: E402
    CONFIGS,
    LEVELS,
    TODAY,
    checkpoints,
    compute_to_reach,
    front_at,
    hypervolume,
    median,
    table,
    trial_records,
)
from benchmarks._search_wall import NEW_ARMS  # noqa: E402
from cachesearch.search.executors.base import Progress  # noqa: E402

MODELS = ("embedded:shapes", "embedded:shapes-flux")
WORK = REPO / ".cache" / "search_efficiency"


def _slug(model: str) -> str:
    return model.split(":")[-1]


def uptime() -> str:
    """The 1, 5 and 15 minute load averages (recorded with every wall time)."""
    return " ".join(Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3])


def _load_study(run_dir: Path, name: str) -> Any:
    import optuna

    from cachesearch.search.study import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=open_storage(str(run_dir / "study.journal")))


# -- run ------------------------------------------------------------------------------------------------------
class _Budget(Progress):
    """Progress that stops the run (as a Ctrl-C between trials does) once its candidates executed ``limit`` MACs."""

    def __init__(self, limit: float | None, spent: float = 0.0) -> None:
        self.limit, self.macs = limit, spent

    def trial(self, *, number: int, done: int, front: int, outcome: Any) -> None:
        res = outcome.user_attrs.get("result") or {}
        if "duplicate_of" not in outcome.user_attrs:
            self.macs += float(res.get("macs") or 0.0)
        if self.limit is not None and self.macs >= self.limit:
            raise KeyboardInterrupt


def _today_compute(model: str, work: Path) -> float | None:
    runs = [json.loads(p.read_text()) for p in (work / "runs").glob(f"{_slug(model)}-today-s*/done.json")]
    totals = [r["search_macs"] for r in runs]
    return statistics.median(totals) if totals else None


def fixed_macs(run_dir: Path, n_train: int, profile_prompts: int, ev: Any) -> float:
    """What a run executes at full compute before its candidates: the train references, the block-change profile
    (``--profile-prompts`` images of the train pool) and MagCache's calibration where the run made one."""
    from cachesearch.schedule import Full
    from cachesearch.search.attrs import ATTR_MAGCACHE

    profile = len(ev.fixtures.prompt_pool("train", profile_prompts).prompts)
    magcache = int((_load_study(run_dir, run_dir.name).user_attrs.get(ATTR_MAGCACHE) or {}).get("loops", 0))
    return (n_train + profile + magcache) * ev.image_macs(ev.compile(Full()))


def cmd_run(args: argparse.Namespace) -> None:
    import torch

    from cachesearch.search import RunSettings, run_search

    torch.set_num_threads(1)
    for config in args.configs:
        for seed in args.seeds:
            name = f"{_slug(args.model)}-{config}-s{seed}"
            run_dir = args.work / "runs" / name
            if (run_dir / "done.json").is_file():
                print(f"{name}: done already", flush=True)
                continue
            today = _today_compute(args.model, args.work)
            limit = args.budget_macs or (None if today is None or config == "today" else args.budget * today)
            spent = 0.0
            if (run_dir / "study.journal").is_file():  # an interrupted run resumes; its trials so far count
                spent = sum(r["macs"] for r in trial_records(_load_study(run_dir, name)))
            settings = RunSettings(name=name, model=args.model, out=str(args.work / "runs"), seed=seed,
                                   trials=args.trials, timeout=None, workers=args.workers, **CONFIGS[config])
            info: dict[str, Any] = {}

            def prepared(prep: Any, info: dict[str, Any] = info) -> None:
                info["ev"] = prep.ev

            print(f"{name}: {CONFIGS[config]} budget {limit} MACs, load {uptime()}", flush=True)
            load0, t0 = uptime(), time.time()
            progress = _Budget(limit, spent)
            summary = run_search(settings, progress, cache_dir=str(args.work / "cache"), export=False,
                                 on_prepared=prepared)
            records = trial_records(_load_study(run_dir, name))
            done = {"config": config, "seed": seed, "model": args.model, "settings": settings.to_dict(),
                    "workers": args.workers, "stopped": summary.stopped, "wall_s": round(time.time() - t0, 1),
                    "load_before": load0, "load_after": uptime(),
                    "fixed_macs": fixed_macs(run_dir, settings.n_train, settings.profile_prompts, info["ev"]),
                    "search_macs": sum(r["macs"] for r in records),
                    "reused_macs": sum(r["reused"] for r in records), "trials": len(records)}
            (run_dir / "done.json").write_text(json.dumps(done, indent=1), encoding="utf-8")
            print(f"{name}: {summary.stopped} after {len(records)} trials, {done['search_macs']:.3g} MACs, "
                  f"{done['wall_s']} s", flush=True)


# -- re-scoring on the common held-out set --------------------------------------------------------------------
class Rescorer:
    """Held-out loss of schedules on one common image set per model, cached on disk by mask."""

    def __init__(self, model: str, work: Path, heldout: int) -> None:
        self.model, self.work, self.heldout = model, work, heldout
        self.path = work / f"rescore-{_slug(model)}-{heldout}.json"
        self.cache: dict[str, list[float]] = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self._ev: Any = None
        self._spaces: dict[str, Any] = {}

    @property
    def ev(self) -> Any:
        if self._ev is None:
            from cachesearch.evaluate import EvalConfig, Evaluator

            self._ev = Evaluator(EvalConfig(model=self.model, num_inference_steps=20, n_train=1,
                                            n_heldout=max(1, self.heldout), cache_dir=str(self.work / "cache")))
        return self._ev

    def loss(self, key: str, schedule_of: Any) -> tuple[float, float]:
        if key not in self.cache:
            res = self.ev.evaluate(schedule_of(self.ev), split="heldout")
            self.cache[key] = [float(res.quality) if res.valid else float("inf"), float(res.cost_ratio)]
            self.path.write_text(json.dumps(self.cache), encoding="utf-8")
        q, c = self.cache[key]
        return q, c

    def of_trial(self, run_dir: Path, record: dict[str, Any]) -> tuple[float, float]:
        """A run's trial, replayed from its parameters in the run's own space (as export does)."""
        from optuna.trial import FixedTrial

        from cachesearch.search.objective import mask_key

        def schedule_of(ev: Any) -> Any:
            schedule = ev.compile(self._space(run_dir).suggest(FixedTrial(record["params"])))
            if mask_key(schedule) != record["mask_key"]:
                raise RuntimeError(f"{run_dir.name} trial {record['number']}: the replay compiles another mask")
            return schedule

        return self.loss(record["mask_key"], schedule_of)

    def _space(self, run_dir: Path) -> Any:
        """The run's space resolved with its stored profile (cached per run)."""
        from cachesearch.schedule import BlockProfile
        from cachesearch.search.attrs import ATTR_MAGCACHE, ATTR_PROFILE
        from cachesearch.search.space import SpaceContext, load_space

        key = str(run_dir)
        if key not in self._spaces:
            attrs = _load_study(run_dir, run_dir.name).user_attrs
            stored, mag = attrs[ATTR_PROFILE], attrs.get(ATTR_MAGCACHE)
            profile = BlockProfile(blocks=tuple(stored["blocks"]), changes=tuple(map(tuple, stored["changes"])))
            self._spaces[key] = load_space(run_dir / "space.yaml").resolve(SpaceContext.of(
                self.ev, profile, stored["id"], mag_ratios=tuple(mag["ratios"]) if mag else None))
        return self._spaces[key]


def _run_info(run_dir: Path, model: str, rescorer: Rescorer) -> dict[str, Any]:
    """A run's ``done.json``, or for a run still going (``report --partial``) the same fields from its study."""
    import yaml

    settings = yaml.safe_load((run_dir / "run.yaml").read_text(encoding="utf-8"))["settings"]
    fixed = fixed_macs(run_dir, settings["n_train"], settings["profile_prompts"], rescorer.ev)
    if (run_dir / "done.json").is_file():  # fixed cost recounted (the profile's prompts were once left out)
        return {**json.loads((run_dir / "done.json").read_text()), "fixed_macs": fixed, "n_train": settings["n_train"]}
    config, seed = run_dir.name.removeprefix(f"{_slug(model)}-").rsplit("-s", 1)
    records = trial_records(_load_study(run_dir, run_dir.name))
    return {"config": config, "seed": int(seed), "fixed_macs": fixed, "workers": 1, "n_train": settings["n_train"],
            "search_macs": sum(r["macs"] for r in records), "reused_macs": sum(r["reused"] for r in records),
            "load_before": None, "load_after": None, "partial": True}


def _curve(run_dir: Path, done: dict[str, Any], rescorer: Rescorer, n: int, upto: int | None = None
           ) -> dict[str, Any]:
    records = trial_records(_load_study(run_dir, run_dir.name))[:upto]
    cum, total = [], done["fixed_macs"]
    for r in records:
        total += r["macs"]
        cum.append(total)
    start = min((r["start"] for r in records if r["start"]), default=0.0)
    points = []
    for upto in checkpoints([c - done["fixed_macs"] for c in cum], n) if records else []:
        front = front_at(records, upto)
        train = [(r["values"][0], r["values"][1]) for r in front]
        held = [rescorer.of_trial(run_dir, r) for r in front] if rescorer.heldout else train
        points.append({"trials": upto, "macs": cum[upto - 1], "wall_s": records[upto - 1]["done"] - start,
                       "hv": hypervolume(held), "hv_train": hypervolume(train), "front": len(front)})
    spent, reused = sum(r["macs"] for r in records), sum(r["reused"] for r in records)
    return {"config": done["config"], "seed": done["seed"], "points": points, "trials": len(records),
            "prefix_saving": reused / max(1.0, reused + spent), "partial": done.get("partial", False),
            "load": [done["load_before"], done["load_after"]], "workers": done["workers"]}


def summarise(curves: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One model's curves as the table's rows: per configuration the seeds, the median final hypervolume, prefix
    sharing's saving and the compute (MACs, as a multiple of ``today``'s, and wall seconds) to reach 90 / 95 / 100 %
    of ``today``'s median final hypervolume; ``None`` without a ``today`` curve."""
    today = [c for c in curves if c["config"] == "today"]
    if not today:
        return None
    target = statistics.median(c["points"][-1]["hv"] for c in today)
    today_macs = statistics.median(c["points"][-1]["macs"] for c in today)
    rows = {}
    for config in dict.fromkeys(c["config"] for c in curves):
        mine = [c for c in curves if c["config"] == config]
        row: dict[str, Any] = {"seeds": len(mine),
                               "final_hv": statistics.median(c["points"][-1]["hv"] for c in mine),
                               "prefix_saving": statistics.median(c["prefix_saving"] for c in mine)}
        for level in LEVELS:
            macs = [compute_to_reach([(p["macs"], p["hv"]) for p in c["points"]], level * target) for c in mine]
            wall = [compute_to_reach([(p["wall_s"], p["hv"]) for p in c["points"]], level * target) for c in mine]
            m = median(macs)
            row[f"{int(level * 100)}%"] = {"macs": m, "of_today": None if m is None else m / today_macs,
                                           "wall_s": median(wall)}
        rows[config] = row
    return {"target_hv": target, "today_macs": today_macs, "table": rows, "curves": curves}


def _add_model(results: dict[str, Any], model: str, curves: list[dict[str, Any]], missing: str) -> None:
    """``results[model]``: the summary of its curves, printed as its table (``missing`` printed instead when there
    is no ``today`` curve to measure against)."""
    summary = summarise(curves)
    if summary is None:
        print(missing)
        return
    results[model] = summary
    print(f"\n{table(model, summary)}", flush=True)


def cmd_report(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    results: dict[str, Any] = {}
    for model in args.models:
        rescorer = Rescorer(model, args.work, args.heldout)
        curves = []
        for path in sorted((args.work / "runs").glob(f"{_slug(model)}-*/study.journal")):
            run_dir = path.parent
            if not (run_dir / "done.json").is_file() and not (args.partial and (run_dir / "run.yaml").is_file()):
                continue
            done = _run_info(run_dir, model, rescorer)
            if done["config"] not in CONFIGS:
                continue
            if not args.heldout and done["n_train"] != TODAY["n_train"]:
                raise SystemExit(f"{run_dir.name}: --heldout 0 scores train losses, so every run needs "
                                 f"{TODAY['n_train']} train images (the old default's); it has {done['n_train']}")
            print(f"re-scoring {run_dir.name}", flush=True)
            upto = args.today_trials if done["config"] == "today" else None
            curve = _curve(run_dir, done, rescorer, args.checkpoints, upto)
            if curve["points"]:  # a run still preparing has none
                curves.append(curve)
        _add_model(results, model, curves, f"{model}: no 'today' runs yet; run them first")
    _write(args, results)


def cmd_curves(args: argparse.Namespace) -> None:
    """The same curves and table at full scale, from the ``wall`` runs: each a whole ``cachesearch run`` as a user
    runs it (two workers, the old default at ``--timeout 330``, the other arms at 80), every trial in its study."""
    import torch
    import yaml

    torch.set_num_threads(1)
    wall = json.loads(args.wall.read_text(encoding="utf-8"))
    arms = list(wall["arms"])
    results: dict[str, Any] = {}
    for model in args.models:
        rescorer = Rescorer(model, args.work, int(wall["heldout"]))
        curves = []
        runs = (wall["models"].get(model) or {}).get("runs", [])
        for run in sorted(runs, key=lambda r: (arms.index(r["arm"]), r["seed"])):
            run_dir = args.work / "wall" / "runs" / run["name"]
            settings = yaml.safe_load((run_dir / "run.yaml").read_text(encoding="utf-8"))["settings"]
            done = {"config": run["arm"], "seed": run["seed"], "workers": settings["workers"],
                    "load_before": run["load"][0], "load_after": run["load"][1],
                    "fixed_macs": fixed_macs(run_dir, settings["n_train"], settings["profile_prompts"], rescorer.ev)}
            print(f"re-scoring {run['name']}", flush=True)
            curve = _curve(run_dir, done, rescorer, args.checkpoints)
            if abs(curve["points"][-1]["hv"] - run["hv"]) > 1e-9:  # the final train front is the exported one
                raise SystemExit(f"{run['name']}: final hypervolume {curve['points'][-1]['hv']:.6f} is not the "
                                 f"exported front's {run['hv']:.6f}")
            curves.append(curve)
        _add_model(results, model, curves, f"{model}: no 'today' runs in {args.wall}")
    _write(args, results, benchmark="search_efficiency_full", heldout=int(wall["heldout"]),
           bold=("today", "default-refcache"), wall_label="wall s (quiet machine)",
           source="the wall runs (results/search_efficiency_wall.json): whole `cachesearch run` commands, two "
                  "workers, one at a time on a quiet machine", configs=wall["arms"])


def _write(args: argparse.Namespace, results: dict[str, Any], benchmark: str = "search_efficiency",
           heldout: int | None = None, bold: tuple[str, ...] = ("today", "new"),
           wall_label: str = "wall s (shared CPU: distorted)", **extra: Any) -> None:
    from benchmarks._bench import environment, write_and_say

    heldout = args.heldout if heldout is None else heldout
    doc = {"benchmark": benchmark, "environment": environment("cpu"), "heldout_images": heldout,
           "today_trials": getattr(args, "today_trials", None) or "all",
           "partial_runs": bool(getattr(args, "partial", False)),
           "hypervolume": f"log10 {'held-out' if heldout else 'train'} loss (floor 1e-4) x cost ratio up to "
                          "(log10 0.5, 1.05)",
           "measure": (f"held-out losses re-scored on {heldout} common images" if heldout else
                       f"train losses on the {TODAY['n_train']} train images every run shares (no held-out "
                       "re-scoring, --heldout 0)"),
           "today": TODAY, "configs": CONFIGS}
    doc.update(extra)
    doc["models"] = results
    write_and_say(args.out, doc)
    _plot(results, args.out.with_suffix(".png"), "held-out" if heldout else "train", bold=bold, wall=wall_label)


def _plot(results: dict[str, Any], path: Path, losses: str, *, bold: tuple[str, ...], wall: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 2, figsize=(12, 4.2 * len(results)), squeeze=False)
    for row, (model, r) in zip(axes, results.items()):
        order = {c: i for i, c in enumerate(r["table"])}
        for c in r["curves"]:
            i = order[c["config"]]
            style = {"color": plt.cm.tab10(i % 10), "ls": "-" if i < 10 else "--",
                     "lw": 2.2 if c["config"] in bold else 1.0}
            first = c["seed"] == min(x["seed"] for x in r["curves"] if x["config"] == c["config"])
            row[0].plot([p["macs"] for p in c["points"]], [p["hv"] for p in c["points"]],
                        label=c["config"] if first else None, **style)
            row[1].plot([p["wall_s"] for p in c["points"]], [p["hv"] for p in c["points"]], **style)
        for ax, x in zip(row, ("denoiser MACs executed", wall)):
            ax.axhline(r["target_hv"], color="k", ls=":", lw=0.8)
            ax.set_xscale("log")
            ax.set_xlabel(x)
            ax.set_ylabel(f"hypervolume ({losses} losses)")
            ax.set_title(model)
        row[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")


# -- prefix sharing's saving, wall-time target ------------------------------------------------------------------
def cmd_prefix(args: argparse.Namespace) -> None:
    from benchmarks._search_wall import prefix_runs

    prefix_runs(args)


def cmd_wall(args: argparse.Namespace) -> None:
    from benchmarks._search_wall import wall_runs

    wall_runs(args, Rescorer)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=WORK, help="runs, reference cache and re-scores (kept)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="search runs of some configurations and seeds")
    r.add_argument("--model", default=MODELS[0])
    r.add_argument("--configs", nargs="+", default=["today", "new"], choices=list(CONFIGS))
    r.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    r.add_argument("--trials", type=int, default=1000)
    r.add_argument("--budget", type=float, default=1.0, help="stop at this multiple of today's compute")
    r.add_argument("--budget-macs", type=float, default=None, help="stop at this many MACs (instead of --budget)")
    r.add_argument("--workers", type=int, default=1)
    p = sub.add_parser("report", help="curves and table of every finished run")
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--heldout", type=int, default=16,
                   help="common held-out images every front is re-scored on; 0 = the train losses (runs must "
                        "then share the old default's train images)")
    p.add_argument("--checkpoints", type=int, default=14)
    p.add_argument("--partial", action="store_true", help="include runs still going (their trials so far)")
    p.add_argument("--today-trials", type=int, default=None,
                   help="today's final = its first N trials (a smaller-scale table when its full runs are too long)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "search_efficiency.json")
    x = sub.add_parser("prefix", help="prefix sharing's saving on the ecad and components spaces and DeepCache")
    x.add_argument("--trials", type=int, default=150)
    x.add_argument("--seed", type=int, default=0)
    x.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "prefix_sharing.json")
    c = sub.add_parser("curves", help="the curves and table at full scale, from the wall runs' studies")
    c.add_argument("--models", nargs="+", default=list(MODELS))
    c.add_argument("--wall", type=Path, default=REPO / "benchmarks" / "results" / "search_efficiency_wall.json",
                   help="the wall result naming the runs (under --work/wall/runs) and the held-out image count")
    c.add_argument("--checkpoints", type=int, default=14)
    c.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "search_efficiency_full.json")
    w = sub.add_parser("wall", help="new default at --timeout 80 vs today's at 330, wall clock (quiet machine)")
    w.add_argument("--models", nargs="+", default=list(MODELS))
    w.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    w.add_argument("--new-timeout", type=float, default=80.0)
    w.add_argument("--today-timeout", type=float, default=330.0)
    w.add_argument("--heldout", type=int, default=16)
    w.add_argument("--arms", nargs="+", default=["today", "new"], choices=["today", *NEW_ARMS],
                   help="today: the old default at --today-timeout; new: this checkout's defaults at --new-timeout; "
                        "the others: the same with a flag or two changed (benchmarks/_search_wall.py NEW_ARMS)")
    w.add_argument("--n-heldout-max", type=int, default=16,
                   help="every arm's export validates on at most this many held-out pairs (the same for all)")
    w.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "search_efficiency_wall.json")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    {"run": cmd_run, "report": cmd_report, "curves": cmd_curves, "prefix": cmd_prefix,
     "wall": cmd_wall}[args.cmd](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

