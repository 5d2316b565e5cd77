"""Peer caches side by side with a cachesearch front on a FLUX-architecture model (issue 12, point 7).

The peer points are runtime schedules (issue 27): the libraries' own caches, as cachesearch's runtime search families
propose them (their baselines at the grids below: diffusers' FirstBlockCache, MagCache with its own calibration on
the train prompts, PyramidAttentionBroadcast, FasterCache (attention half: the embedded model batches CFG inside its
call, there is no uncond batch for CFG-Cache) and cache-dit's DBCache) plus diffusers' TaylorSeer hook, each
compiled and evaluated by the evaluator: one image per pipeline call with a cold cache, scored against the same
full-compute references. Per point: cost = MACs of what actually ran over full compute, counted per image
(``cachesearch.models._executed_cost``: the blocks and components that computed in each denoiser call; our static
schedules are counted the same way, the evaluator's analytic ratio beside it); ms per image (one-prompt call end to
end, median of ``--repeats`` after a warm-up, ``--threads`` torch threads); held-out LPIPS (the evaluator's metric)
and PSNR.

Every point is scored on ``--unseen`` (default 64) (prompt, seed) pairs that no search saw (:mod:`_unseen`: held-out
captions past the 64 a run may validate on, new seeds; ``--unseen 0``: the built-in held-out split of
``--n-heldout``), with the distribution of its per-image losses: mean (95 % BCa interval), median, p90, max and the
images over 0.05 (issue 30, point 5).

``--front RUN_DIR``: every schedule the search exported, scored on train and on the unseen pairs; for each peer
point the schedule the run itself would pick among those costing at most the peer's: the lowest held-out
``--select-stat`` (mean or p90) the run validated it on (its file's metrics; pairs disjoint from the unseen ones;
train LPIPS for a file without them), never the unseen scores. Goal: ours <= 0.7x the peer's mean and <= 1.0x its
p90. ``--ecad-front RUN_DIR``: that run's front (ECAD's space) against ``--front`` (default space): trials,
hypervolume of (held-out LPIPS, cost) up to (``--hv-ref-loss``, 1), best held-out LPIPS at a few costs.

Usage (writes ``benchmarks/results/peers_dit.json`` and ``.png``; ``--quick``: ``peers_dit_quick.*``)::

    python benchmarks/peers_dit.py --model embedded:shapes-flux --steps 20 --unseen 64 \\
        --front artifacts/runs/<name> [--ecad-front artifacts/runs/<ecad>] [--quick] [--peers fbcache,...]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import repo_relative  # noqa: E402
from _peers_report import plot, tables  # noqa: E402,F401 - the docs generator renders through peers_dit.tables

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
METHODS = ("fbcache", "taylorseer", "magcache", "pab", "fastercache", "dbcache")
GRID: dict[str, list] = {  # per method: the baseline grid of its search family (taylorseer: (interval, order))
    "fbcache": [0.05, 0.1, 0.2, 0.4],                                          # threshold
    "taylorseer": [(i, o) for i in (2, 3, 5) for o in (1, 2)],                 # cache_interval, max_order
    "magcache": [0.06, 0.12, 0.24],                                            # threshold (K=3, retention 0.2)
    "pab": [2, 3, 4],                                                          # spatial block skip range
    "fastercache": [2, 3],                                                     # spatial attention skip range
    "dbcache": [0.08, 0.16, 0.32],                                             # threshold, at F1B0 and F2B1
}
QUICK_GRID: dict[str, list] = {
    "fbcache": [0.1, 0.4], "taylorseer": [(3, 1), (5, 2)], "magcache": [0.06, 0.24], "pab": [2, 4],
    "fastercache": [2], "dbcache": [0.16],
}
GOAL = 0.7
"""Ours <= GOAL x the peer's mean loss on the unseen pairs ..."""
GOAL_P90 = 1.0
"""... and <= GOAL_P90 x its p90, at a cost no higher than the peer's."""
BROKEN = 0.05
"""A loss over this counts as a broken image."""
CACHE_DIT_INSTALL = "pip install 'cachesearch[cache-dit]'  # it needs only torch, diffusers, transformers, pyyaml"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Peer:
    """One peer setting: a runtime policy (the library's own cache, enabled through a runtime schedule)."""

    method: str
    setting: str
    params: dict[str, Any]
    policy: Any


def cache_dit_status() -> dict[str, Any]:
    """Whether cache-dit imports here (its version) or why not (DBCache runs on CPU once it is installed)."""
    os.environ.setdefault("CACHE_DIT_LOG_LEVEL", "error")
    try:
        import cache_dit
    except Exception as e:  # noqa: BLE001 - any import failure is the reason
        return {"available": False, "reason": f"{type(e).__name__}: {e}", "install": CACHE_DIT_INSTALL}
    return {"available": True, "version": getattr(cache_dit, "__version__", None)}


def peer_grid(ev: Any, methods: list[str], grid: dict[str, list], mag_ratios: tuple[float, ...] | None) -> list[Peer]:
    """The settings ``grid[method]`` of each method, as cachesearch's runtime search families propose them
    (``search_spaces/runtime.yaml``: their baselines at these grids; MagCache with ``mag_ratios``, DBCache with
    cache-dit's warm-up scaled to the steps, PAB at its default timestep range, FasterCache's attention half with a
    0.5 weight); TaylorSeer (a static family in cachesearch, diffusers' hook here) at its default 3 warm-up steps
    with float32 factors."""
    from diffusers.hooks import TaylorSeerCacheConfig

    import cachesearch as cs
    from cachesearch.search.space import SpaceContext, find_space, load_space

    ctx = SpaceContext.of(ev, mag_ratios=mag_ratios)
    families = load_space(find_space("runtime")).masks
    peers: list[Peer] = []
    for method in methods:
        if method == "taylorseer":
            for n, o in grid[method]:
                cfg = TaylorSeerCacheConfig(cache_interval=n, max_order=o, disable_cache_before_step=3,
                                            taylor_factors_dtype=torch.float32)
                peers.append(Peer(method, f"N={n} O={o}", {"cache_interval": n, "max_order": o,
                                                          "disable_cache_before_step": 3},
                                  cs.DiffusersCache(cfg)))
            continue
        for b in families[method].baselines(ctx, grid[method]):
            params = families[method].params(b.policy, ctx) or {}
            peers.append(Peer(method, b.name.removeprefix(f"{method}-"), params, b.policy))
    return peers


def _latency_ms(ev: Any, kwargs: dict[str, Any], repeats: int) -> float:
    """Median ms of a one-prompt pipeline call (first train prompt and its latents), after one warm-up."""
    from cachesearch.evaluate import measure_latency

    prompt = [ev.prompt_set("train").prompts[0]]
    latents = ev.latents("train")[:1].to(ev.device, ev.dtype)
    size = {"height": ev.height, "width": ev.width, "guidance_scale": ev.guidance_scale}
    stats = measure_latency(lambda: ev.pipe(prompt=prompt, latents=latents, output_type="pt", **size, **kwargs),
                            warmup=1, repeats=repeats, device=ev.device)
    return float(stats.median_ms)


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def tail(res: Any) -> dict[str, Any]:
    """The distribution of a result's per-image losses: n, mean with its 95 % interval, median, p90, max, images
    over :data:`BROKEN` and the losses themselves (pairs are the same for every point: paired comparisons)."""
    s = res.summary(threshold=BROKEN, interval=True)
    return {"n": s.n, "mean": s.mean, "ci95": list(s.ci95), "median": s.median, "p90": s.p90, "max": s.max,
            "over": round(s.over * s.n), "losses": [round(v, 6) for v in res.losses]}


def run_validation(sched: Any) -> dict[str, Any] | None:
    """What the run recorded for a schedule on its own held-out pairs (its file's metrics), or ``None``."""
    m = sched.metrics
    q = None if m is None or m.quality is None else m.quality.heldout
    if q is None:
        return None
    t = None if m.tail is None else m.tail.heldout
    return {"mean": q, "p90": None if t is None else t.p90, "n": None if t is None else t.n}


def measure_peer(ev: Any, peer: Peer, split: str, repeats: int) -> dict[str, Any]:
    """One peer point through the evaluator (one image per call, each with a cold cache): counted cost, scores,
    latency (``repeats`` = 0: not timed)."""
    sched = ev.compile(peer.policy, name=f"{peer.method}-{peer.setting}")
    row: dict[str, Any] = {"method": peer.method, "setting": peer.setting, "params": peer.params,
                           "runtime": sched.runtime.to_plain()}
    res = ev.evaluate(sched, split=split, measure=False)
    if not res.valid:
        return {**row, "valid": False, "reason": res.reason}
    kwargs = {k: v for k, v in sched.pipeline_kwargs().items() if k != "guidance_scale"}
    with sched.applied(ev.pipe):
        ms = _latency_ms(ev, kwargs, repeats) if repeats else None
    return {**row, "valid": True, "cost_ratio": res.cost_ratio, "lpips": res.quality, "psnr": _finite(res.psnr),
            "accuracy": res.accuracy, "ms_per_image": ms, "tail": tail(res)}


def measure_schedule(ev: Any, counter: Any, path: Path, train_calls: int) -> dict[str, Any]:
    """One exported schedule on the train split: counted cost, train LPIPS, and what the run recorded for it on its
    own held-out pairs (``run_heldout``: what the matching ranks by)."""
    import cachesearch as cs

    sched = cs.load_schedule(path)
    row: dict[str, Any] = {"file": path.name, "name": sched.name, "kind": sched.kind, "policy": dict(sched.policy)}
    ref = sched.reference
    if ref is not None and ref.num_inference_steps != ev.num_inference_steps:
        return {**row, "valid": False, "reason": f"made for {ref.num_inference_steps} reference steps"}
    counter.reset()
    with counter.counting():
        train = ev.evaluate(sched, split="train", measure=False)
    if not train.valid:
        return {**row, "valid": False, "reason": train.reason}
    # a runtime schedule runs one image per call: the evaluator's own count is per image (train_calls is per batch)
    cost = train.cost_ratio if sched.runtime is not None else counter.report().ratio(train_calls)
    return {**row, "valid": True, "cost_ratio": cost, "analytic_cost_ratio": None if sched.runtime is not None else
            train.cost_ratio, "train_lpips": train.quality, "run_heldout": run_validation(sched), "scored": False}


def score_schedule(ev: Any, path: Path, row: dict[str, Any], repeats: int) -> dict[str, Any]:
    """``row`` with the schedule's scores on the held-out (unseen) pairs and its latency."""
    import cachesearch as cs

    sched = cs.load_schedule(path)
    held = ev.evaluate(sched, split="heldout", measure=False)
    if not held.valid:
        return {**row, "valid": False, "reason": held.reason}
    kwargs = {k: v for k, v in sched.pipeline_kwargs().items() if k != "guidance_scale"}
    with sched.applied(ev.pipe):
        ms = _latency_ms(ev, kwargs, repeats) if repeats else None
    return {**row, "scored": True, "lpips": held.quality, "psnr": _finite(held.psnr), "accuracy": held.accuracy,
            "ms_per_image": ms, "tail": tail(held)}


def schedule_files(run_dir: Path) -> list[Path]:
    """The schedule files a run exported (``run_dir/schedules/*.yaml`` but the index), sorted."""
    return sorted(p for p in (run_dir / "schedules").glob("*.yaml") if p.name != "index.yaml")


def measure_front(ev: Any, counter: Any, run_dir: Path, repeats: int, train_calls: int,
                  chosen: Any = None) -> dict[str, Any]:
    """Every schedule exported to ``run_dir/schedules`` (index excluded) on the train split, and the run's trial
    counts; scored on the held-out pairs: those ``chosen(rows)`` names (file names), or all of them (``None``)."""
    files = schedule_files(run_dir)
    if not files:
        raise FileNotFoundError(f"{run_dir}/schedules has no schedule files; is it a `cachesearch run` directory?")
    rows = [measure_schedule(ev, counter, f, train_calls) for f in files]
    names = {r["file"] for r in rows if r.get("valid")} if chosen is None else chosen(rows)
    for i, (f, r) in enumerate(zip(files, rows)):
        if r.get("valid") and f.name in names:
            rows[i] = r = score_schedule(ev, f, r, repeats)
            _log(f"[front {run_dir.name} {i + 1}/{len(files)}] {f.name}: cost {r.get('cost_ratio')} "
                 f"lpips {r.get('lpips')}")
    return {"run": repo_relative(run_dir), "trials": trial_counts(run_dir), "scored": "all" if chosen is None else
            "matched", "schedules": rows}


def trial_counts(run_dir: Path) -> dict[str, Any]:
    """Trials the run's Optuna journal created (op code 4, CREATE_TRIAL); ``None`` without a journal."""
    journal = run_dir / "study.journal"
    total = sum('"op_code":4,' in line for line in journal.open()) if journal.is_file() else None
    return {"total": total}


def selection_loss(r: dict[str, Any], stat: str = "mean") -> float:
    """What the matching ranks a front schedule by: the run's own held-out ``stat`` (its mean where the file
    has no p90), train LPIPS for a file the run did not validate."""
    v = r.get("run_heldout") or {}
    return v.get(stat) if v.get(stat) is not None else v["mean"] if v.get("mean") is not None else r["train_lpips"]


def best_at(front: list[dict[str, Any]], cost: float, stat: str = "mean") -> dict[str, Any] | None:
    """The valid front schedule with the lowest :func:`selection_loss` among those costing at most ``cost``."""
    ok = [r for r in front if r.get("valid") and r["cost_ratio"] <= cost + 1e-9]
    return min(ok, key=lambda r: (selection_loss(r, stat), r["cost_ratio"])) if ok else None


def _ratio(ours: float, peer: float) -> float | None:
    return ours / peer if peer > 0 else (1.0 if ours <= 0 else None)


def verdict(mean_ratio: float | None, p90_ratio: float | None) -> str:
    """``win`` when ours <= GOAL x the peer's mean and <= GOAL_P90 x its p90, else what failed."""
    fails = []
    for name, ratio, goal in (("mean", mean_ratio, GOAL), ("p90", p90_ratio, GOAL_P90)):
        if ratio is None or ratio > goal:
            fails.append(f"{name} {'inf' if ratio is None else f'{ratio:.2f}'}x > {goal}x")
    return "win" if not fails else "LOSS: " + ", ".join(fails)


def match(peers: list[dict[str, Any]], front: list[dict[str, Any]], stat: str = "mean") -> list[dict[str, Any]]:
    """For each valid peer point: our schedule at its cost (:func:`best_at`), mean and p90 ratios ours/peer on
    the scored pairs, and the verdict."""
    out = []
    for p in peers:
        if not p.get("valid"):
            continue
        o = best_at(front, p["cost_ratio"], stat) or {}
        pt, ot = p.get("tail") or {}, o.get("tail") or {}
        m: dict[str, Any] = {"method": p["method"], "setting": p["setting"], "peer_cost": p["cost_ratio"],
                             "peer_lpips": p["lpips"], "peer_p90": pt.get("p90"), "ours": o.get("file"),
                             "ours_cost": o.get("cost_ratio"), "ours_lpips": o.get("lpips"),
                             "ours_p90": ot.get("p90"), "ratio": None, "p90_ratio": None}
        if not o:
            m["verdict"] = "LOSS: no front schedule this cheap"
        elif p["lpips"] <= 0:
            m["verdict"] = "n/a: the peer matched full compute exactly"
        else:
            m["ratio"] = o["lpips"] / p["lpips"]
            if pt and ot:
                m["p90_ratio"] = _ratio(ot["p90"], pt["p90"])
            m["verdict"] = verdict(m["ratio"], m["p90_ratio"]) if pt and ot else (
                "win" if m["ratio"] <= GOAL else "LOSS: mean")
        out.append(m)
    return out


def hypervolume(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area dominated by (loss, cost) ``points`` (both minimised) inside the box up to ``ref``."""
    hv, best_c = 0.0, ref[1]
    for q, c in sorted((min(q, ref[0]), min(c, ref[1])) for q, c in points):
        hv, best_c = (hv + (ref[0] - q) * (best_c - c), c) if c < best_c else (hv, best_c)
    return hv


def compare_spaces(default: dict[str, Any], ecad: dict[str, Any], ref_loss: float,
                   costs: tuple[float, ...] = (0.25, 0.4, 0.5, 0.75)) -> dict[str, Any]:
    """ECAD's space vs the default space: trial budgets, hypervolume, best held-out LPIPS at fixed costs."""
    out: dict[str, Any] = {"ref": [ref_loss, 1.0]}
    for key, run in (("default", default), ("ecad", ecad)):
        pts = [(r["lpips"], r["cost_ratio"]) for r in run["schedules"] if r.get("valid")]
        out[key] = {"run": run["run"], "trials": run["trials"], "front_size": len(pts),
                    "hypervolume": hypervolume(pts, (ref_loss, 1.0)),
                    "at_cost": {str(c): (b or {}).get("lpips") for c in costs for b in [best_at(run["schedules"], c)]}}
    a, b = out["default"]["trials"].get("total"), out["ecad"]["trials"].get("total")
    out["equal_budget"] = a is not None and b is not None and abs(a - b) <= 0.05 * max(a, b)
    hv_a, hv_b = out["default"]["hypervolume"], out["ecad"]["hypervolume"]
    out["hypervolume_ratio_ecad_over_default"] = hv_b / hv_a if hv_a > 0 else None
    return out


def run(ev: Any, *, methods: tuple[str, ...] | list[str] = METHODS, quick: bool = False,
        front: Path | list[Path] | None = None, ecad_front: Path | None = None, repeats: int = 3,
        hv_ref_loss: float = 0.1, select_stat: str = "mean", score_front: bool = False) -> dict[str, Any]:
    """The whole comparison on evaluator ``ev`` (held-out split): the result document (no environment). ``repeats``
    0: no latency; ``quick``: :data:`QUICK_GRID`; ``score_front``: score every front schedule on the held-out
    pairs (default: those the matching picks; ``ecad_front`` is always scored whole)."""
    from cachesearch.models._executed_cost import ExecutedCost

    steps, split = ev.num_inference_steps, "heldout"
    if ev.prefixes.enabled:  # a schedule that resumed from an earlier one's prefix would not run its first steps
        from cachesearch.evaluate._prefix import PrefixCache

        ev.prefixes = PrefixCache(0)
    counter = ExecutedCost(ev.denoiser)
    with counter.counting():  # full compute: primes the per-call MACs at the shapes that run; must be exactly 1
        full = ev.fixtures.generate(split, {"num_inference_steps": steps}, "full")
    ref_calls = (full_report := counter.report()).calls
    ev.reference("train")  # made now, not inside the first schedule's count
    counter.reset()
    with counter.counting():  # the train split's calls: our schedules' costs are counted on it
        ev.fixtures.generate("train", {"num_inference_steps": steps}, "full")
    train_calls = counter.report().calls
    full_ms = _latency_ms(ev, {"num_inference_steps": steps}, repeats) if repeats else None
    doc: dict[str, Any] = {
        "full_compute": {"cost_ratio": full_report.ratio(), "calls": ref_calls, "ms_per_image": full_ms,
                         "equals_reference": bool(torch.equal(full, ev.reference(split))),
                         "macs_per_call": full_report.full_macs // max(ref_calls, 1)},
        "goal": {"mean": GOAL, "p90": GOAL_P90, "broken": BROKEN},
        "cache_dit": cache_dit_status() if "dbcache" in methods else None,
        "fastercache_note": "FLUX is guidance-distilled (no CFG batch): FasterCache's CFG-Cache half does not apply; "
                            "its attention broadcast (t_i ~ t_{i-1} + w (t_{i-1} - t_{i-2}), w = 0.5) does.",
    }
    methods = [m for m in methods if m != "dbcache" or doc["cache_dit"]["available"]]
    mag = None
    if "magcache" in methods:
        from cachesearch.evaluate import magcache_ratios

        mag = magcache_ratios(ev, split="train").ratios  # diffusers' own calibrate=True run on the train prompts
    peers = peer_grid(ev, methods, QUICK_GRID if quick else GRID, mag)
    rows = []
    for i, peer in enumerate(peers):
        rows.append(r := measure_peer(ev, peer, split, repeats))
        _log(f"[peer {i + 1}/{len(peers)}] {peer.method} {peer.setting}: cost {r.get('cost_ratio')} "
             f"lpips {r.get('lpips')} ms {r.get('ms_per_image')}")
    doc["magcache_ratios"] = None if mag is None else list(mag)
    doc["peers"] = rows
    after = ev.fixtures.generate(split, {"num_inference_steps": steps}, "full (after peers)")
    doc["full_compute"]["equals_reference_after_peers"] = bool(torch.equal(after, ev.reference(split)))
    def chosen(front_rows: list[dict[str, Any]]) -> set[str]:  # what the matching can pick (train side only)
        return {b["file"] for p in rows if p.get("valid") for b in [best_at(front_rows, p["cost_ratio"],
                                                                               select_stat)] if b}

    for i, run_dir in enumerate([front] if isinstance(front, Path) else list(front or [])):
        measured = measure_front(ev, counter, run_dir, repeats, train_calls,
                                 None if score_front or (ecad_front is not None and i == 0) else chosen)
        ms = match(rows, measured["schedules"], select_stat)
        part = {"front": measured, "matches": ms, "summary": {
            "peer_points": sum(not m["verdict"].startswith("n/a") for m in ms),
            "wins": sum(m["verdict"] == "win" for m in ms),
            "exact_peers": sum(m["verdict"].startswith("n/a") for m in ms),
            "losses": [f"{m['method']} {m['setting']}: {m['verdict']}" for m in ms if m["verdict"].startswith("LOSS")]}}
        if i == 0:
            doc.update(part)
        else:  # further fronts (--front A B ...) against the same peer points
            doc.setdefault("more_fronts", []).append(part)
    if ecad_front is not None:
        if front is None:
            raise ValueError("--ecad-front needs --front (the default-space run to compare with)")
        ecad = measure_front(ev, counter, ecad_front, 0, train_calls)
        doc["ecad_vs_default"] = {**compare_spaces(doc["front"], ecad, hv_ref_loss), "ecad_front": ecad}
    return doc


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the comparison, print the tables, write JSON and plot; returns the exit code."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="embedded:shapes-flux")
    p.add_argument("--steps", type=int, default=28, help="reference flow-matching Euler steps (default 28)")
    p.add_argument("--n-train", type=int, default=4, help="train prompts (MagCache calibration, our selection)")
    p.add_argument("--unseen", type=int, default=64, help="(prompt, seed) pairs no search saw that every point is "
                                                           "scored on (0: the built-in held-out split)")
    p.add_argument("--n-heldout", type=int, default=8, help="held-out prompts every point is scored on (--unseen 0)")
    p.add_argument("--score-front", action="store_true",
                   help="score every front schedule on the held-out pairs (default: those a peer point is matched to)")
    p.add_argument("--select-stat", choices=("mean", "p90"), default="mean",
                   help="the run's own held-out statistic our schedule at a peer's cost is picked by")
    p.add_argument("--peers", default=",".join(METHODS), help=f"subset of {','.join(METHODS)} (dbcache: cache-dit)")
    p.add_argument("--front", type=Path, nargs="+", default=None,
                   help="`cachesearch run` directories (default space); the first is the one the summary is about, "
                        "each further one is matched against the same peer points")
    p.add_argument("--ecad-front", type=Path, default=None, help="a run directory searched in ECAD's space")
    p.add_argument("--hv-ref-loss", type=float, default=0.1, help="hypervolume reference LPIPS (cost ref: 1.0)")
    p.add_argument("--repeats", type=int, default=3, help="timed one-prompt calls per latency median (0: no timing)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache-dir", default=str(ROOT / ".cache" / "cachesearch"))
    p.add_argument("--out", type=Path, default=None, help="JSON path (default results/peers_dit[_quick].json)")
    p.add_argument("--quick", action="store_true", help="two settings per method (one for FasterCache), 2 repeats")
    args = p.parse_args(argv)
    methods = [m for m in args.peers.split(",") if m]
    if bad := sorted(set(methods) - set(METHODS)):
        p.error(f"--peers: unknown {bad}; choose from {','.join(METHODS)}")
    for flag, run_dir in [*(("--front", d) for d in args.front or []), ("--ecad-front", args.ecad_front)]:
        if run_dir is not None and not schedule_files(run_dir):
            p.error(f"{flag} {run_dir}: no exported schedules in {run_dir / 'schedules'} (a `cachesearch run` "
                    f"folder; `cachesearch export --name NAME` writes them)")  # before the peers' long measurement
    torch.set_num_threads(args.threads)
    from _bench import environment, write_json
    from diffusers.utils import logging as diffusers_logging

    from cachesearch.evaluate import EvalConfig, Evaluator

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    t0 = time.perf_counter()
    prompts, n_heldout = None, args.n_heldout
    if args.unseen:
        from _unseen import unseen_prompt_file

        work = Path(args.cache_dir) / "unseen"
        prompts = str(unseen_prompt_file(args.model, work / f"peers-{args.model.replace(':', '-')}-{args.unseen}.yaml",
                                         args.unseen, n_train=args.n_train))
        n_heldout = args.unseen
    ev = Evaluator(EvalConfig(model=args.model, device=args.device, num_inference_steps=args.steps,
                              n_train=args.n_train, n_heldout=n_heldout, cache_dir=args.cache_dir,
                              prompts_file=prompts, batch_size=min(16, max(args.n_train, n_heldout))))
    doc = {"benchmark": "peers_dit", "model": args.model, "steps": args.steps, "metric": ev.metric_name,
           "random_weights": ev.random_weights, "environment": environment(args.device),
           "config": {**{k: ([repo_relative(x) for x in v] if isinstance(v, list) else repo_relative(v)
                             if isinstance(v, Path) or k == "cache_dir" else v)
                         for k, v in vars(args).items() if k != "out"}, "grid": QUICK_GRID if args.quick else GRID},
           "evaluator": ev.describe(), "prompts": {s: ev.prompt_set(s).digest() for s in ("train", "heldout")},
           **run(ev, methods=methods, quick=args.quick, front=args.front, ecad_front=args.ecad_front,
                  repeats=min(args.repeats, 2) if args.quick else args.repeats, hv_ref_loss=args.hv_ref_loss,
                  select_stat=args.select_stat, score_front=args.score_front)}
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    stem = "peers_dit_quick" if args.quick else "peers_dit"
    out = args.out or RESULTS / f"{stem}.json"
    write_json(out, doc)
    png = plot(doc, out.with_suffix(".png"))
    print(tables(doc))
    _log(f"wrote {repo_relative(out)} and {repo_relative(png)} in {doc['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
