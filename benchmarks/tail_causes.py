"""Why the tail (issue 30, point 4): which features of a static schedule break a few images, on pairs no search saw.

On ``embedded:shapes-flux`` (20 flow-matching steps) the cheap end of the front is the stack cache whose middle
recomputes where the profiled change adds up (``middleauto``), often with a second-order Taylor forecast. This
scores a grid of such schedules around the issue's broken point (front 0, back 0, warm-up 2, threshold 0.19) on 64
unseen (prompt, seed) pairs (:mod:`_unseen`) and measures, per image:

- the forecast order (0: the middle's residual is reused; 1, 2: Taylor forecasts) and the longest run of reused
  steps (``max_skip``: 0 = no limit), at the same threshold;
- the profile the mask is placed by: the mean change over 8 train prompts (what a run uses), over 64, and the
  p90 over 64 images (equal numbers of middle recomputes, so equal cost);
- each image's *missed change*: the change of its own middle blocks over the steps the mask reuses, relative to
  what the profile predicted there. A static mask cannot see it; if it predicts the broken images, the tail is
  the price of not adapting per prompt.

Writes ``benchmarks/results/tail_causes.json`` and the grid of the worst cases ``docs/images/tail_worst.png``
(reference above, schedule below, ST-LPIPS under each)::

    python benchmarks/tail_causes.py [--model embedded:shapes-flux] [--steps 20] [--n 64]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import RESULTS, ROOT, environment, repo_relative, write_json  # noqa: E402
from _unseen import quiet_unseen_evaluator, unseen_arguments  # noqa: E402

GRID_PNG = ROOT / "docs" / "images" / "tail_worst.png"
BROKEN = 0.05


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def longest_reuse(mask: str) -> int:
    """The longest run of reused steps in a mask."""
    return max((len(r) for r in mask.split("R")), default=0)


def matched_threshold(make: Any, space: Any, steps: int, recomputes: int) -> float:
    """A threshold whose mask recomputes the middle ``recomputes`` times (bisection on the log scale)."""
    lo, hi = 1e-4, 100.0
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        n = make(mid).mask(space, steps).count("R")
        if n > recomputes:
            lo = mid
        else:
            hi = mid
    return hi


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties)."""
    if len(x) < 3:
        return None
    rx, ry = _ranks(x), _ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(values: list[float]) -> np.ndarray:
    """Ranks 0..n-1, tied values sharing their average rank."""
    v = np.asarray(values, dtype=float)
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v))
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2
        i = j + 1
    return ranks


def schedules(ev: Any, profiles: dict[str, Any], steps: int) -> list[dict[str, Any]]:
    """The grid: (name, policy, features) around the issue's broken point."""
    from cachesearch.schedule import MiddleCacheAuto

    base = {"front": 0, "back": 0, "warmup": 2, "threshold": 0.19}
    out = []
    for order in (0, 1, 2):
        for skip in (0, 1, 2, 3):
            out.append({"group": "order x gap", "order": order, "max_skip": skip, "profile": "mean8",
                        "policy": MiddleCacheAuto(**base, max_skip=skip, order=order, profile=profiles["mean8"])})
    ref = MiddleCacheAuto(**base, max_skip=2, order=2, profile=profiles["mean8"])
    recomputes = ref.mask(ev.space, steps).count("R")
    for name in ("mean64", "p90x64"):
        for order in (0, 2):
            def make(t: float, name: str = name, order: int = order) -> Any:
                return MiddleCacheAuto(**{**base, "threshold": t}, max_skip=2, order=order, profile=profiles[name])
            t = matched_threshold(make, ev.space, steps, recomputes)
            out.append({"group": "profile", "order": order, "max_skip": 2, "profile": name, "policy": make(t)})
    for order in (0, 2):
        out.append({"group": "front block", "order": order, "max_skip": 2, "profile": "mean8",
                    "policy": MiddleCacheAuto(**{**base, "front": 1}, max_skip=2, order=order,
                                              profile=profiles["mean8"])})
    return out


def missed_change(mask: str, per_image: torch.Tensor, predicted: list[float]) -> list[float]:
    """Per image: its middle change over the reused steps over what the profile predicted there."""
    reused = [s for s, c in enumerate(mask) if c == "."]
    if not reused:
        return [0.0] * per_image.shape[0]
    want = sum(predicted[s] for s in reused) or 1e-12
    return [float(per_image[i, reused].sum()) / want for i in range(per_image.shape[0])]


def worst_grid(ev: Any, rows: list[dict[str, Any]], by_name: dict[str, Any], path: Path, k: int = 8) -> list[dict]:
    """The ``k`` worst (schedule, image) cases over the grid as a PNG: reference above, schedule below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = sorted(((loss, r["name"], i) for r in rows for i, loss in enumerate(r["losses"])), reverse=True)
    picked, seen = [], set()
    for loss, name, i in cases:  # one case per image: the schedule that broke it most
        if i not in seen:
            picked.append((loss, name, i))
            seen.add(i)
        if len(picked) == k:
            break
    ref = ev.reference("heldout")
    prompts = ev.prompt_set("heldout").prompts
    fig, axes = plt.subplots(2, k, figsize=(1.6 * k, 3.9), dpi=110)
    out = []
    for col, (loss, name, i) in enumerate(picked):
        img = ev.images(by_name[name], split="heldout", images=slice(i, i + 1))[0]
        for row, pic in enumerate((ref[i], img)):
            ax = axes[row, col]
            ax.imshow(pic.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, col].set_title(prompts[i].replace(" on a ", "\non a "), fontsize=5.5)
        axes[1, col].set_xlabel(f"{loss:.3f}\n{name}", fontsize=5.5)
        out.append({"image": i, "prompt": prompts[i], "schedule": name, "loss": loss})
    axes[0, 0].set_ylabel("full compute", fontsize=7)
    axes[1, 0].set_ylabel("schedule", fontsize=7)
    fig.suptitle("The worst unseen images of static middle caches (embedded:shapes-flux, 20 steps; ST-LPIPS)",
                 fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return out


def table(doc: dict[str, Any]) -> str:
    """The markdown table of the grid: per schedule its features, cost, unseen tail and the rank correlation of
    the images' missed change with their loss."""
    lines = ["| schedule | group | order | profile | cost | longest reuse | mean | p90 | max | broken | "
             "rho(missed, loss) |", "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in doc["schedules"]:
        if not r.get("valid"):
            lines.append(f"| {r['name']} | {r['group']} | invalid: {r['reason']} |")
            continue
        rho = r["spearman_missed_vs_loss"]
        lines.append(f"| {r['name']} | {r['group']} | {r['order']} | {r['profile']} | {r['cost']:.3f} | "
                     f"{r['longest_reuse']} | {r['mean']:.4f} | {r['p90']:.4f} | {r['max']:.4f} | "
                     f"{r['broken']}/{r['n']} | {'-' if rho is None else f'{rho:.2f}'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    unseen_arguments(p, work=ROOT / ".cache" / "tail_causes", out=RESULTS / "tail_causes.json")
    p.add_argument("--profile-n", type=int, default=64, help="train prompts of the large profiles")
    p.add_argument("--grid", type=Path, default=GRID_PNG)
    args = p.parse_args(argv)
    from cachesearch.evaluate import EvalConfig, Evaluator, profile_blocks, profile_images
    from cachesearch.schedule import MiddleCache

    t0 = time.perf_counter()
    ev = quiet_unseen_evaluator(args)
    prof_ev = Evaluator(EvalConfig(model=args.model, num_inference_steps=args.steps, n_train=args.profile_n,
                                   n_heldout=1, batch_size=16, cache_dir=args.cache_dir), model=ev.model)
    _log(f"profiles: mean over 8 and {args.profile_n} train prompts, p90 over {args.profile_n}")
    profiles = {"mean8": profile_blocks(prof_ev, n=min(8, args.profile_n)), "mean64": profile_blocks(prof_ev),
                "p90x64": profile_blocks(prof_ev, statistic="p90")}
    blocks, unseen = profile_images(ev, split="heldout")
    grid = schedules(ev, profiles, args.steps)
    rows, by_name = [], {}
    for g in grid:
        policy = g.pop("policy")
        sched = ev.compile(policy)
        name = f"{policy.default_name(args.steps)}-{g['profile']}"
        by_name[name] = sched
        middle = MiddleCache(interval=1, front=policy.front, back=policy.back).middle(ev.space)
        idx = [blocks.index(b) for b in middle]
        mask = sched.masks()[middle[0]]
        res = ev.evaluate(sched, split="heldout", measure=False)
        if not res.valid:
            rows.append({**g, "name": name, "valid": False, "reason": res.reason})
            continue
        s = res.summary(threshold=BROKEN, interval=True)
        own = unseen[:, idx].mean(1)  # each image's mean middle change per step
        prof = [sum(profiles[g["profile"]].changes[profiles[g["profile"]].blocks.index(b)][t] for b in middle)
                / len(middle) for t in range(args.steps)]
        missed = missed_change(mask, own, prof)
        losses = list(res.losses)
        top = sorted(range(len(losses)), key=lambda i: missed[i], reverse=True)[: max(1, len(losses) // 10)]
        broken = [i for i, v in enumerate(losses) if v > BROKEN]
        rows.append({**g, "name": name, "valid": True, "threshold": policy.threshold, "mask": mask,
                     "cost": res.cost_ratio, "longest_reuse": longest_reuse(mask), "mean": s.mean,
                     "ci95": list(s.ci95), "median": s.median, "p90": s.p90, "cvar": s.cvar, "max": s.max,
                     "broken": len(broken), "n": s.n, "losses": losses, "missed_change": missed,
                     "spearman_missed_vs_loss": spearman(missed, losses),
                     "broken_in_top_decile_missed": sum(i in top for i in broken)})
        _log(f"{name}: cost {res.cost_ratio:.3f} mean {s.mean:.4f} p90 {s.p90:.4f} max {s.max:.4f} broken "
             f"{len(broken)}/{s.n} rho {rows[-1]['spearman_missed_vs_loss']}")
    valid = [r for r in rows if r.get("valid")]
    hard: dict[int, int] = {}
    for r in valid:
        for i, v in enumerate(r["losses"]):
            hard[i] = hard.get(i, 0) + (v > BROKEN)
    worst = worst_grid(ev, valid, by_name, args.grid)
    doc = {"benchmark": "tail_causes", "model": args.model, "steps": args.steps, "metric": ev.metric_name,
           "environment": environment("cpu"), "unseen_prompts": ev.prompt_set("heldout").digest(),
           "broken_threshold": BROKEN, "profiles": {k: {"blocks": list(v.blocks), "changes": [list(c) for c in
                                                                                              v.changes]}
                                                    for k, v in profiles.items()},
           "schedules": rows, "images_broken_by_how_many_schedules": hard, "worst": worst,
           "grid": repo_relative(args.grid), "seconds": round(time.perf_counter() - t0, 1)}
    write_json(args.out, doc)
    print(table(doc))
    _log(f"wrote {repo_relative(args.out)} and {repo_relative(args.grid)} in {doc['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
