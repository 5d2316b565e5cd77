"""The high-cost end (issue 30, point 5): what static schedules near full compute cost on unseen pairs.

FirstBlockCache at threshold 0.05 runs 99 % of `embedded:shapes-flux`'s compute and skips a step on a few prompts
only (median loss 3e-12 on peers_dit's 64 unseen pairs): the one peer point no front schedule comes near. This
scores the dit space's static candidates at that end on the same unseen (prompt, seed) pairs — fewer steps (14 to
19 of 20) and the profile-placed middle cache (``middleauto``: thresholds 0.03 to 0.07, front 1 or 2, back 0 or 1,
residual reuse or an order-1/2 forecast, runs of at most one reused step, warm-up 1) with the profile a run makes
(``--profile-prompts`` 64 train prompts). Cost is the evaluator's MAC table. Writes
``benchmarks/results/near_full.json``::

    python benchmarks/near_full.py [--model embedded:shapes-flux] [--steps 20] [--n 64]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import RESULTS, ROOT  # noqa: E402
from _unseen import (  # noqa: E402
    quiet_unseen_evaluator,
    save_unseen,
    train_profile,
    unseen_arguments,
    unseen_scores,
)

BROKEN = 0.05
STEPS = (14, 15, 16, 17, 18, 19)
THRESHOLDS = (0.03, 0.05, 0.06, 0.065, 0.07)
PROFILE_PROMPTS = 64


def grid(profile: Any) -> list[Any]:
    """The schedules: fewer steps, then every middle-cache variant (threshold, front, back, order)."""
    from cachesearch.schedule import MiddleCacheAuto, StepSet

    return [*(StepSet(count=n) for n in STEPS),
            *(MiddleCacheAuto(threshold=t, front=f, back=b, warmup=1, max_skip=1, order=o, profile=profile)
              for t in THRESHOLDS for f in (1, 2) for b in (0, 1) for o in (0, 1, 2))]


def describe(policy: Any) -> str:
    """A row's label: ``steps N`` or ``middleauto t f b o``."""
    if policy.kind == "steps":
        return f"steps {policy.count}"
    return f"middleauto t={policy.threshold:g} F{policy.front}B{policy.back} order {policy.order}"


def table(doc: dict[str, Any]) -> str:
    """The markdown table of a result document: the schedules that skip anything, by cost (those that skip
    nothing are counted below it)."""
    rows = sorted((r for r in doc["schedules"] if r["cost"] < 1.0 - 1e-9), key=lambda r: (r["cost"], r["mean"]))
    lines = ["| schedule | cost | mean | p90 | max | broken |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['label']} | {r['cost']:.3f} | {r['mean']:.2e} | {r['p90']:.2e} | {r['max']:.3f} | "
              f"{r['broken']} / {r['n']} |" for r in rows]
    full = [r["label"] for r in doc["schedules"] if r["cost"] >= 1.0 - 1e-9]
    return "\n".join(lines) + (f"\n\n{len(full)} of the {len(doc['schedules'])} schedules skip nothing (cost 1.0)."
                               if full else "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    unseen_arguments(p, work=ROOT / ".cache" / "tail_causes", out=RESULTS / "near_full.json")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    ev = quiet_unseen_evaluator(args)
    profile = train_profile(args, ev, PROFILE_PROMPTS)  # what `cachesearch run` profiles (--profile-prompts)
    rows: list[dict[str, Any]] = []
    for policy in grid(profile):
        sched = ev.compile(policy)
        rows.append(r := {"label": describe(policy), "name": sched.name, **unseen_scores(ev, sched, BROKEN)})
        print(f"{r['label']}: cost {r['cost']:.3f} mean {r['mean']:.2e} p90 {r['p90']:.2e} max {r['max']:.3f} "
              f"broken {r['broken']}/{r['n']}", file=sys.stderr, flush=True)
    save_unseen(args, ev, "near_full", rows, t0, table, profile_prompts=PROFILE_PROMPTS, broken_threshold=BROKEN)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
