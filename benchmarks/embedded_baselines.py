"""Heuristic baselines on the embedded model: fewer steps, the DeepCache uniform grid, Block-Caching thresholds.

For every baseline it reports the perceptual distance to full compute on the train and held-out prompts,
PSNR, attribute accuracy, the analytic cost ratio and the measured CPU latency speedup (one pipeline call
of ``--latency-batch`` prompts, median of ``--repeats`` after a warm-up, relative to full compute measured in
the same process). Results go to a table on stdout and to JSON.

Usage::

    python benchmarks/embedded_baselines.py [--steps 20] [--n-train 4] [--n-heldout 4] [--intervals 2,3,4,5,8]
        [--threads 1] [--out benchmarks/results/embedded_baselines.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

import cachesearch as cs
from cachesearch.evaluate import EvalConfig, Evaluator, baselines, profile_blocks, profile_id
from cachesearch.evaluate._baselines import DEFAULT_THRESHOLDS

ROOT = Path(__file__).resolve().parent.parent


def _ints(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            out += list(range(int(lo), int(hi) + 1))
        elif part:
            out.append(int(part))
    return out


def _git_rev() -> str | None:
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _repo_relative(path: str | Path | None) -> str | None:
    """``path`` relative to the repository when it lies inside it (results must not carry this machine's paths)."""
    if path is None:
        return None
    p = Path(path).expanduser().resolve()
    try:
        return p.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def _fmt(v: float | str | None, spec: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):  # "inf" from a JSON-safe result
        return v
    return "inf" if math.isinf(v) else format(v, spec)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the process exit code."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="embedded")
    p.add_argument("--steps", type=int, default=20, help="reference DDIM steps")
    p.add_argument("--n-train", type=int, default=4)
    p.add_argument("--n-heldout", type=int, default=4)
    p.add_argument("--intervals", type=_ints, default=_ints("2-10"), help="DeepCache intervals, e.g. 2,3,4,5,8 or 2-10")
    p.add_argument("--branches", type=_ints, default=None, help="DeepCache branches (default: all)")
    p.add_argument("--thresholds", type=lambda s: [float(x) for x in s.split(",")], default=list(DEFAULT_THRESHOLDS))
    p.add_argument("--no-blockcaching", action="store_true", help="skip profiling and Block-Caching baselines")
    p.add_argument("--repeats", type=int, default=3, help="timed pipeline calls per latency measurement")
    p.add_argument("--latency-batch", type=int, default=1, help="prompts per timed pipeline call")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is steadiest on shared CPUs)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache-dir", default=str(ROOT / ".cache" / "cachesearch"))
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "embedded_baselines.json")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    config = EvalConfig(
        model=args.model,
        device=args.device,
        num_inference_steps=args.steps,
        n_train=args.n_train,
        n_heldout=args.n_heldout,
        latency="measured",
        latency_repeats=args.repeats,
        latency_batch=args.latency_batch,
        batch_size=max(args.n_train, args.n_heldout),
        cache_dir=args.cache_dir,
    )
    ev = Evaluator(config)
    print(f"model {ev.source} (random weights: {ev.random_weights}), metric {ev.metric_name}", file=sys.stderr)

    profile = None
    if not args.no_blockcaching:
        profile = profile_blocks(ev, split="train", granularity="stage")
    candidates: list[tuple[str, cs.Schedule]] = [("full", ev.compile(cs.Full(), name="full"))]
    for b in baselines(ev, profile=profile, intervals=args.intervals, thresholds=args.thresholds):
        name, policy = b.name, b.policy
        if args.branches is not None and isinstance(policy, cs.DeepCache) and policy.branch not in args.branches:
            continue
        candidates.append((name, ev.compile(policy, name=name)))

    rows: list[dict[str, Any]] = []
    for i, (name, sched) in enumerate(candidates):
        t0 = time.perf_counter()
        train = ev.evaluate(sched, split="train", measure=True)
        heldout = ev.evaluate(sched, split="heldout", measure=False) if train.valid else None
        rows.append(
            {
                "name": name,
                "policy": dict(sched.policy),
                "recompute_fraction": sched.recompute_fraction(),
                "train": train.to_dict(json_safe=True),
                "heldout": None if heldout is None else heldout.to_dict(json_safe=True),
            }
        )
        print(
            f"[{i + 1}/{len(candidates)}] {name}: {ev.metric_name} {_fmt(train.quality, '.4f')}/"
            f"{_fmt(heldout.quality if heldout else None, '.4f')} cost {_fmt(train.cost_ratio, '.3f')} "
            f"speedup {_fmt(train.speedup, '.2f')} ({time.perf_counter() - t0:.0f}s)",
            file=sys.stderr,
        )

    base = ev.baseline_latency()
    doc = {
        "benchmark": "embedded_baselines",
        "created": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "git": _git_rev(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "evaluator": ev.describe(),
        "config": {**config.to_dict(), "cache_dir": _repo_relative(config.to_dict().get("cache_dir"))},
        "prompts": {s: ev.prompt_set(s).digest() for s in ("train", "heldout")},
        "baseline_latency": base.to_dict(),
        "profile": None
        if profile is None
        else {"id": profile_id(profile), "blocks": list(profile.blocks), "changes": [list(r) for r in profile.changes]},
        "results": rows,
        "seconds": time.perf_counter() - t_start,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")

    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{ev.source}: baselines vs full compute (DDIM {args.steps} steps, {args.n_train}+{args.n_heldout} "
        f"images, {ev.metric_name}, CPU {torch.get_num_threads()} thread(s), full = {base.median_ms:.0f} ms/call)"
    )
    for col in ("schedule", f"{ev.metric_name} train", "held-out", "PSNR", "accuracy", "cost ratio", "speedup"):
        table.add_column(col, justify="left" if col == "schedule" else "right")
    for row in sorted(rows, key=lambda r: (-(r["train"]["cost_ratio"] or 0), r["name"])):
        tr, he = row["train"], row["heldout"] or {}
        if not tr["valid"]:
            table.add_row(row["name"], f"invalid: {tr['reason']}", "", "", "", "", "")
            continue
        table.add_row(
            row["name"],
            _fmt(tr["quality"], ".4f"),
            _fmt(he.get("quality"), ".4f"),
            _fmt(tr["psnr"], ".1f"),
            _fmt(tr["accuracy"], ".0%"),
            _fmt(tr["cost_ratio"], ".3f"),
            _fmt(tr["speedup"], ".2f"),
        )
    Console(width=140).print(table)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
