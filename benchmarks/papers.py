"""Reproduce DeepCache (arXiv 2312.00858) and Block Caching (arXiv 2312.03209) on the embedded models.

At the papers' setting (DDIM, 50 steps; the embedded models' CFG) and against full compute at 50 steps:

(i) DeepCache, uniform, N = 2..10 at branch 0 and at the "best" other branch, each row next to fewer DDIM steps
    at the closest cost (``StepSet(count=round(cost * steps))``). Best branch: among branches >= 1, the one whose
    N=3 schedule saves at least 2x (cost <= ``--best-max-cost`` 0.5, DeepCache's regime) and has the smallest
    LPIPS gap to its equal-cost fewer-steps baseline on the first train images (where caching does best relative
    to fewer steps); the held-out images the tables report are not used.
(ii) Block Caching's automatic threshold schedules (``BlockCachingAuto``) from a stage-level and a layer-level
    block-change profile (train prompts), caching every profiled block ("stage", "layer") or only the attention
    layers ("attentions", the paper's choice); for each level the thresholds whose analytic cost is nearest to
    ``--bc-costs`` (a level that cannot reach them, such as attention-only caching whose ResBlocks always run,
    gets as many targets spread from the largest one down to its cheapest schedule); each schedule plain (reuse
    the block output), with the scale-shift fitted by ``lstsq`` and by ``distill`` on the train prompts, and
    (attentions) with residual reuse; each next to fewer steps at matched cost.

Metrics on the held-out prompts: perceptual distance to full compute (``stlpips-alex`` offline), PSNR,
prompt-attribute accuracy (the procedural checker) and FD: the Fréchet distance between the generated images and
fresh renders of the same held-out captions (new seeds) in the feature space of the shipped ST-LPIPS AlexNet
(``cachesearch.evaluate.frechet_distance``; an FID analogue, not FID, biased upwards at small N: read it against
the floors in the JSON, full compute vs renders and renders vs renders).

Usage::

    python benchmarks/papers.py [--model embedded:scenes,embedded:shapes] [--steps 50] [--n-images 16]
        [--n-heldout N] [--bc-costs 0.75,0.5,0.3] [--distill-iterations 8] [--threads 1] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _bench import environment, write_json

import cachesearch as cs
from cachesearch.embedded import embedded_name, embedded_package
from cachesearch.evaluate import (
    FEATURE_SPACE,
    EvalConfig,
    Evaluator,
    frechet_distance,
    perceptual_features,
    profile_blocks,
    profile_id,
    psnr,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
RENDER_SEEDS = (7_000_000, 8_000_000)  # fresh renders (FD target) and a second set (the renders' own FD floor)
QUICK = {"n_images": 2, "steps": 10, "intervals": [2, 3], "branches": [0, 3], "bc_costs": [0.5],
         "distill_iterations": 5}


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def _ints(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)] if lo else []
    return out


def _safe(v: float | None) -> float | str | None:
    """JSON-safe float (PSNR is inf for identical images)."""
    return None if v is None else v if math.isfinite(v) else str(v)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Bench:
    """One model's evaluator, the held-out reference and the renders' features; measures schedules once."""

    def __init__(self, ev: Evaluator, n_select: int) -> None:
        self.ev = ev
        self.steps = ev.num_inference_steps
        self.n_select = n_select
        self.reference = ev.reference("heldout")
        ev.reference("train")
        self.metric = ev.metric if ev.metric_name == "stlpips-alex" else None
        captions = list(ev.prompt_set("heldout").prompts)
        renders = [self.render(captions, base) for base in RENDER_SEEDS]
        self.render_feats = self.features(renders[0])
        self.floors = {
            "full_compute_vs_renders": frechet_distance(self.features(self.reference), self.render_feats),
            "renders_vs_renders": frechet_distance(self.features(renders[1]), self.render_feats),
        }
        self.reference_accuracy = ev.accuracy(self.reference, "heldout")
        self.rows: dict[str, dict[str, Any]] = {}
        self.train_rows: dict[str, float] = {}

    def render(self, captions: list[str], seed_base: int) -> torch.Tensor:
        """Procedural renders of ``captions`` (seeds ``seed_base + i``) as float [N, 3, H, W] in [0, 1]."""
        pkg = embedded_package(self.ev.source)
        out = []
        for i, text in enumerate(captions):
            if embedded_name(self.ev.source) == "shapes":
                c = pkg.parse_caption(text)
                img = pkg.render(c.shape, c.fg, c.bg, seed=seed_base + i, size=self.ev.height)
            else:
                img = pkg.render(text, seed=seed_base + i, size=self.ev.height)
            out.append(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255.0)
        return torch.stack(out)

    def features(self, images: torch.Tensor) -> np.ndarray:
        return perceptual_features(images, metric=self.metric)

    def compile(self, policy: cs.Policy, name: str, reuse: str = "output") -> cs.Schedule:
        if reuse == "output":
            return self.ev.compile(policy, name=name)
        from cachesearch._compile import compile_schedule

        return compile_schedule(self.ev.pipe, policy, num_inference_steps=self.steps, reuse=reuse, name=name,
                                guidance_scale=self.ev.guidance_scale, source=self.ev.source, space=self.ev.space,
                                reference=self.ev.reference_run)

    def cost(self, sched: cs.Schedule) -> float:
        return float(self.ev.cost_ratio(sched))

    def measure(self, sched: cs.Schedule, **extra: Any) -> dict[str, Any]:
        """Held-out metrics of ``sched`` (cached by name): LPIPS, PSNR, accuracy, FD, cost, seconds."""
        if sched.name in self.rows:
            return self.rows[sched.name]
        ev, t0 = self.ev, time.perf_counter()
        kwargs = {k: v for k, v in sched.pipeline_kwargs().items() if k != "guidance_scale"}
        row: dict[str, Any] = {"name": sched.name, "policy": dict(sched.policy), "reuse": sched.reuse.value,
                               "cost_ratio": self.cost(sched), **extra}
        try:
            with sched.applied(ev.pipe):
                images = ev.fixtures.generate("heldout", kwargs, sched.name)
        except Exception as e:  # noqa: BLE001 - a failing candidate is a row with its reason
            row.update(valid=False, reason=f"{type(e).__name__}: {e}", seconds=time.perf_counter() - t0)
            self.rows[sched.name] = row
            return row
        row.update(
            valid=True,
            lpips=float(ev.metric(images, self.reference).double().mean()),
            psnr=_safe(float(psnr(images, self.reference).mean())),
            accuracy=ev.accuracy(images, "heldout"),
            fd=frechet_distance(self.features(images), self.render_feats),
            seconds=time.perf_counter() - t0,
        )
        self.rows[sched.name] = row
        _log(f"  {sched.name}: cost {row['cost_ratio']:.3f} {ev.metric_name} {row['lpips']:.4f} "
             f"PSNR {float(row['psnr']):.1f} acc {row['accuracy']} FD {row['fd']:.3f} ({row['seconds']:.1f}s)")
        return row

    def steps_at(self, cost: float) -> dict[str, Any]:
        """The fewer-steps baseline whose step count is closest to ``cost`` × steps (measured once per count)."""
        k = min(self.steps - 1, max(1, round(cost * self.steps)))
        return self.measure(self.compile(cs.StepSet(count=k), f"steps-{k}"), kind="steps", count=k)

    def train_lpips(self, sched: cs.Schedule) -> float:
        """Perceptual distance on the first ``n_select`` train images (selection only, never reported as result)."""
        if sched.name not in self.train_rows:
            r = self.ev.evaluate(sched, split="train", measure=False, images=slice(0, self.n_select))
            self.train_rows[sched.name] = float(r.quality) if r.valid else math.inf
        return self.train_rows[sched.name]


def _pair(row: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    out = {"schedule": row, "steps_baseline": base}
    if row.get("valid") and base.get("valid"):
        out["beats_steps_lpips"] = row["lpips"] < base["lpips"]
        out["beats_steps_fd"] = row["fd"] < base["fd"]
    return out


def run_deepcache(b: Bench, intervals: list[int], branches: list[int], max_cost: float) -> dict[str, Any]:
    """(i): branch selection at N=3 on train images, then N in ``intervals`` at branch 0 and the best branch
    (among branches >= 1 whose N=3 cost is at most ``max_cost``; a deep branch is nearly full compute and would
    trivially match fewer steps at ~0.95 cost)."""
    t0 = time.perf_counter()
    selection = []
    for br in branches:
        s = b.compile(cs.DeepCache(interval=3, branch=br), f"deepcache-n3-b{br}")
        cost = b.cost(s)
        k = min(b.steps - 1, max(1, round(cost * b.steps)))
        dc, st = b.train_lpips(s), b.train_lpips(b.compile(cs.StepSet(count=k), f"steps-{k}"))
        selection.append({"branch": br, "cost_ratio": cost, "train_lpips": dc, "steps": k, "steps_train_lpips": st,
                          "gap": dc - st})
        _log(f"  select b{br}: cost {cost:.3f} lpips {dc:.4f} vs steps-{k} {st:.4f}")
    others = [r for r in selection if r["branch"] != 0 and r["cost_ratio"] <= max_cost]
    others = others or [min((r for r in selection if r["branch"] != 0), key=lambda r: r["cost_ratio"])]
    best = min(others, key=lambda r: (r["gap"], r["cost_ratio"]))["branch"]
    tables: dict[str, list[dict[str, Any]]] = {}
    for label, br in (("branch0", 0), ("best", best)):
        rows = []
        for n in intervals:
            if not 2 <= n < b.steps:
                continue
            s = b.compile(cs.DeepCache(interval=n, branch=br), f"deepcache-n{n}-b{br}")
            row = b.measure(s, kind="deepcache", interval=n, branch=br)
            rows.append({"interval": n, "branch": br, **_pair(row, b.steps_at(row["cost_ratio"]))})
        tables[label] = rows
    return {"selection_rule": f"among branches >= 1 with N=3 cost <= {max_cost}, the one minimising train "
            "LPIPS(DeepCache N=3) - train LPIPS(fewer steps at equal cost) on the first "
            f"{b.n_select} train images", "selection": selection, "best_branch": best,
            "tables": tables, "seconds": time.perf_counter() - t0}


def _threshold_for(b: Bench, profile: Any, blocks: str, target: float) -> tuple[float, float]:
    """The threshold whose schedule's analytic cost is nearest to ``target`` (bisection in log-threshold: the cost
    falls as the threshold grows; 3 significant digits); returns (threshold, cost)."""
    pid = profile_id(profile)

    def cost(t: float) -> float:
        policy = cs.BlockCachingAuto(threshold=t, profile=profile, profile_id=pid, blocks=blocks)
        return b.cost(b.compile(policy, "probe"))

    lo, hi = math.log(1e-3), math.log(20.0)
    seen: dict[float, float] = {}
    for _ in range(14):
        mid = float(f"{math.exp((lo + hi) / 2):.3g}")
        seen[mid] = cost(mid)
        if seen[mid] > target:
            lo = math.log(mid)
        else:
            hi = math.log(mid)
    t = min(seen, key=lambda k: (abs(seen[k] - target), k))
    return t, seen[t]


def run_blockcaching(b: Bench, costs: list[float], fit_images: int, distill_images: int,
                     distill_iterations: int) -> dict[str, Any]:
    """(ii): profiles, thresholds per level, and each schedule plain / lstsq / distill (/ residual)."""
    t0 = time.perf_counter()
    profiles, seconds = {}, {}
    for g in ("stage", "layer"):
        tp = time.perf_counter()
        profiles[g] = profile_blocks(b.ev, split="train", granularity=g)
        seconds[g] = time.perf_counter() - tp
    levels = {"stage": ("stage", "profile"), "layer": ("layer", "profile"), "attentions": ("layer", "attentions")}
    rows = []
    for level, (g, blocks) in levels.items():
        seen: set[float] = set()
        floor = _threshold_for(b, profiles[g], blocks, 0.0)[1]  # the cheapest this level can be
        targets = [c for c in costs if c > floor + 0.01]
        if len(targets) < len(costs):  # e.g. attention layers only: spread the targets over what is reachable
            top = max(min(max(costs), 0.99), floor)
            targets = [top] if len(costs) == 1 else [top + (floor - top) * i / (len(costs) - 1)
                                                     for i in range(len(costs))]
        for target in targets:
            thr, cost = _threshold_for(b, profiles[g], blocks, target)
            if thr in seen or cost >= 0.999:
                continue
            seen.add(thr)
            policy = cs.BlockCachingAuto(threshold=thr, profile=profiles[g], profile_id=profile_id(profiles[g]),
                                         blocks=blocks)
            base_name = f"bc-{level}-t{thr:g}"
            plain = b.compile(policy, base_name)
            variants = {"plain": b.measure(plain, kind="blockcaching", level=level, threshold=thr)}
            for method, n_fit, extra in (("lstsq", fit_images, {}),
                                         ("distill", distill_images, {"iterations": distill_iterations})):
                tf = time.perf_counter()
                fitted = cs.fit_scale_shift(b.ev.pipe, plain, method=method, n_images=n_fit, **extra)
                fit_s = time.perf_counter() - tf
                fitted = dataclasses.replace(fitted, name=f"{base_name}-{method}")
                variants[method] = b.measure(fitted, kind="blockcaching", level=level, threshold=thr,
                                             scale_shift=method, fit_images=n_fit, fit_seconds=fit_s, **extra)
            if level == "attentions":
                res = b.compile(policy, f"{base_name}-residual", reuse="residual")
                variants["residual"] = b.measure(res, kind="blockcaching", level=level, threshold=thr)
            base = b.steps_at(variants["plain"]["cost_ratio"])
            rows.append({"level": level, "threshold": thr, "target_cost": target, "cost_ratio": cost,
                         "variants": {k: _pair(v, base) for k, v in variants.items()}, "steps_baseline": base})
    return {"profiles": {g: {"id": profile_id(p), "blocks": list(p.blocks), "seconds": seconds[g]}
                         for g, p in profiles.items()},
            "rows": rows, "seconds": time.perf_counter() - t0}


def _f(v: Any, spec: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return format(v, spec)


def _md(header: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    return "\n".join(out)


def _cells(r: dict[str, Any]) -> list[str]:
    if not r.get("valid"):
        return ["invalid", "", "", ""]
    return [_f(r["lpips"], ".4f"), _f(r["psnr"], ".1f"), _f(r["accuracy"], ".0%"), _f(r["fd"], ".3f")]


def tables(doc: dict[str, Any]) -> str:
    """The markdown tables of one model's results."""
    out = []
    dc = doc["deepcache"]
    for label, rows in dc["tables"].items():
        branch = rows[0]["branch"] if rows else "-"
        out.append(f"\n**DeepCache vs fewer steps at equal cost** ({label}, branch {branch})\n")
        lines = [[f"N={r['interval']}", _f(r["schedule"]["cost_ratio"], ".3f"), *_cells(r["schedule"]),
                  r["steps_baseline"]["name"], _f(r["steps_baseline"]["cost_ratio"], ".3f"),
                  *_cells(r["steps_baseline"])] for r in rows]
        out.append(_md(["DeepCache", "cost", "LPIPS", "PSNR", "acc", "FD", "fewer steps", "cost", "LPIPS", "PSNR",
                        "acc", "FD"], lines))
    out.append("\n**Block Caching vs fewer steps at matched cost** (LPIPS / FD per variant)\n")
    lines = []
    for r in doc["blockcaching"]["rows"]:
        v = r["variants"]
        cell = {k: (f"{_f(p['schedule'].get('lpips'), '.4f')} / {_f(p['schedule'].get('fd'), '.3f')}"
                    if p["schedule"].get("valid") else "invalid") for k, p in v.items()}
        st = r["steps_baseline"]
        lines.append([r["level"], _f(r["threshold"], "g"), _f(r["cost_ratio"], ".3f"), cell["plain"], cell["lstsq"],
                      cell["distill"], cell.get("residual", "-"), st["name"],
                      f"{_f(st.get('lpips'), '.4f')} / {_f(st.get('fd'), '.3f')}"])
    out.append(_md(["level", "threshold", "cost", "plain", "+lstsq", "+distill", "residual", "fewer steps",
                    "steps LPIPS / FD"], lines))
    fl = doc["fd_floors"]
    out.append(f"\nFD floors: full compute vs renders {fl['full_compute_vs_renders']:.3f}, renders vs renders "
               f"{fl['renders_vs_renders']:.3f}; full-compute accuracy {_f(doc['reference_accuracy'], '.0%')}")
    return "\n".join(out)


def run_model(model: str, args: argparse.Namespace) -> dict[str, Any]:
    """Both papers on one embedded model; writes ``papers_<name>.json`` and returns the document."""
    t_start, cpu_start = time.perf_counter(), time.process_time()  # wall and CPU (the cores are shared)
    name = embedded_name(model)
    if name is None:
        raise SystemExit(f"--model: {model!r} is not an embedded model (FD needs its procedural renders)")
    n_train, n_heldout = args.n_images, args.n_heldout or args.n_images
    config = EvalConfig(model=model, device="cpu", scheduler="ddim", num_inference_steps=args.steps,
                        n_train=n_train, n_heldout=n_heldout, metric="stlpips-alex",
                        batch_size=max(n_train, n_heldout), cache_dir=args.cache_dir)
    ev = Evaluator(config)
    _log(f"{model}: {ev.describe()['sampler']}, {n_train}+{n_heldout} images, metric {ev.metric_name}")
    t_ref = time.perf_counter()
    b = Bench(ev, n_select=min(n_train, args.select_images))
    ref_s = time.perf_counter() - t_ref
    branches = args.branches if args.branches is not None else list(range(len(ev.space.deepcache_branches)))
    dc = run_deepcache(b, args.intervals, branches, args.best_max_cost)
    bc = run_blockcaching(b, args.bc_costs, min(n_train, args.fit_images), min(n_train, args.distill_images),
                          args.distill_iterations)
    doc = {
        "benchmark": "papers",
        "environment": environment("cpu"),
        "git": _git_rev(),
        "model": model,
        "evaluator": ev.describe(),
        "config": {**config.to_dict(), "cache_dir": _repo_relative(args.cache_dir), "quick": args.quick,
                   "intervals": args.intervals, "branches": branches, "bc_costs": args.bc_costs,
                   "select_images": b.n_select, "best_max_cost": args.best_max_cost,
                   "fit_images": min(n_train, args.fit_images),
                   "distill_images": min(n_train, args.distill_images),
                   "distill_iterations": args.distill_iterations, "render_seeds": list(RENDER_SEEDS),
                   "note": args.note},
        "prompts": {s: ev.prompt_set(s).digest() for s in ("train", "heldout")},
        "fd": {"feature_space": FEATURE_SPACE, "what": "Frechet distance of held-out images to fresh renders of the "
               "same captions (new seeds) in the shipped ST-LPIPS AlexNet's channel-mean features; an FID "
               "analogue, not FID; biased upwards at small N", "n": n_heldout},
        "fd_floors": b.floors,
        "reference_accuracy": b.reference_accuracy,
        "deepcache": dc,
        "blockcaching": bc,
        "seconds": {"references_and_renders": ref_s, "deepcache": dc["seconds"], "blockcaching": bc["seconds"],
                    "total": time.perf_counter() - t_start, "process_cpu": time.process_time() - cpu_start},
    }
    out = Path(args.out_dir) / f"papers_{name}.json"
    write_json(out, doc)
    print(f"\n## {model}: DDIM {args.steps} steps, {n_train} train + {n_heldout} held-out images, "
          f"{ev.metric_name}, CPU {torch.get_num_threads()} thread(s)\n" + tables(doc))
    _log(f"wrote {_repo_relative(out)} ({doc['seconds']['total']:.0f} s)")
    return doc


def _git_rev() -> str | None:
    import subprocess

    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _repo_relative(path: str | Path) -> str:
    p = Path(path).expanduser().resolve()
    try:
        return p.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    """Run the reproduction for each ``--model``; returns the process exit code."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="embedded:scenes,embedded:shapes", help="comma-separated, run in order")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps of the reference (the papers': 50)")
    p.add_argument("--n-images", type=int, default=16, help="train images (profile, fits, selection)")
    p.add_argument("--n-heldout", type=int, default=None, help="held-out images the tables report (default: n-images)")
    p.add_argument("--intervals", type=_ints, default=_ints("2-10"))
    p.add_argument("--branches", type=_ints, default=None, help="branches tried for 'best' (default: all)")
    p.add_argument("--best-max-cost", type=float, default=0.5,
                   help="'best' branch: only branches whose N=3 cost is at most this (default 0.5: >= 2x saving)")
    p.add_argument("--select-images", type=int, default=8, help="train images scored to choose the best branch")
    p.add_argument("--bc-costs", type=_floats, default=[0.75, 0.5, 0.3], help="target cost ratios of the thresholds")
    p.add_argument("--fit-images", type=int, default=16, help="train images of the lstsq scale-shift fit")
    p.add_argument("--distill-images", type=int, default=8, help="train images of the distill fit")
    p.add_argument("--distill-iterations", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache-dir", default=str(ROOT / ".cache" / "cachesearch"))
    p.add_argument("--out-dir", default=str(RESULTS))
    p.add_argument("--note", default=None, help="free text stored in the JSON config (e.g. why n-images was cut)")
    p.add_argument("--quick", action="store_true", help="dry run: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()))
    args = p.parse_args(argv)
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    torch.set_num_threads(args.threads)
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()
    from cachesearch.models import ModelLoadError

    skipped = []
    for model in [m for m in args.model.split(",") if m]:
        try:
            run_model(model, args)
        except ModelLoadError as e:  # e.g. embedded:scenes before its weights ship: go on with the next model
            _log(f"{model}: skipped: {e}")
            skipped.append(model)
    return 1 if skipped else 0


if __name__ == "__main__":
    raise SystemExit(main())
