"""The forecast divergence guard (issue 30, point 4): do guarded Taylor forecasts break fewer unseen images?

``benchmarks/tail_causes.py`` found that second-order forecasts over long reuse gaps break more of 64 unseen
images than plain residual reuse of the same mask (12 vs 8 at cost 0.40). The guard
(:attr:`cachesearch.Schedule.taylor_guard`) stops a forecast at the first term that outgrows the one before it,
per image, on the device. This scores the same static middle caches as that grid (front 0, back 0, warm-up 2,
threshold 0.19, the issue's broken point) with order 1 and 2 forecasts over gaps of at most 1, 2 and any number
of steps, each without and with the guard, on the same unseen (prompt, seed) pairs; cost is unchanged by the
guard (same masks). Writes ``benchmarks/results/forecast_guard.json``::

    python benchmarks/forecast_guard.py [--model embedded:shapes-flux] [--steps 20] [--n 64]
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
BASE = {"front": 0, "back": 0, "warmup": 2, "threshold": 0.19}


def grid(profile: Any) -> list[Any]:
    """The schedules: order 1 and 2, gaps 1, 2 and unlimited (0), unguarded then guarded."""
    from cachesearch.schedule import MiddleCacheAuto

    return [MiddleCacheAuto(**BASE, order=order, max_skip=skip, guard=guard, profile=profile)
            for order in (1, 2) for skip in (1, 2, 0) for guard in (False, True)]


def table(doc: dict[str, Any]) -> str:
    """The markdown table of a result document: each schedule, then the guard's change on the same mask."""
    head = ("| order | longest gap | guard | cost | mean | p90 | max | broken | images the guard changed |\n"
            "|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in doc["schedules"]:
        gap = r["max_skip"] or "any"
        changed = "" if r["changed"] is None else f"{r['changed']} / {r['n']}"
        lines.append(f"| {r['order']} | {gap} | {'yes' if r['guard'] else 'no'} | {r['cost']:.3f} | "
                     f"{r['mean']:.4f} | {r['p90']:.4f} | {r['max']:.4f} | {r['broken']} / {r['n']} | {changed} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    unseen_arguments(p, work=ROOT / ".cache" / "tail_causes", out=RESULTS / "forecast_guard.json")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    ev = quiet_unseen_evaluator(args)
    profile = train_profile(args, ev)  # the 8-prompt mean profile a run uses (tail_causes' "mean8")
    rows: list[dict[str, Any]] = []
    for policy in grid(profile):
        sched = ev.compile(policy)
        scores = unseen_scores(ev, sched, BROKEN)
        twin = rows[-1] if policy.guard else None  # the unguarded schedule of the same mask, scored just before
        changed = None if twin is None else sum(abs(a - b) > 1e-6 for a, b in zip(scores["losses"], twin["losses"]))
        rows.append(r := {"name": sched.name, "order": policy.order, "max_skip": policy.max_skip,
                          "guard": policy.guard, "mask": next(iter(sched.masks().values())), **scores,
                          "changed": changed})
        print(f"{r['name']}: cost {r['cost']:.3f} mean {r['mean']:.4f} p90 {r['p90']:.4f} max {r['max']:.4f} "
              f"broken {r['broken']}/{r['n']}" + ("" if changed is None else f", guard changed {changed}"),
              file=sys.stderr, flush=True)
    save_unseen(args, ev, "forecast_guard", rows, t0, table, broken_threshold=BROKEN, base=BASE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
