"""(prompt, seed) pairs no search saw: the held-out side of an embedded model's captions beyond what any run's
held-out validation draws (``--n-heldout-max`` 64 takes the first 64), with seeds no split uses.

Shared by the benchmarks that judge fronts after the fact (objective statistics, tail causes, peers): they score
schedules on pairs that neither chose the front (train) nor validated it (held-out).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

UNSEEN_SEED_BASE = 7_000_000
"""Seeds of the unseen pairs: ``7_000_000 + i`` (train 2_000_000+, held-out 3_000_000+, the gates 1_000_000+)."""
UNSEEN_OFFSET = 64
"""The unseen pairs start at this held-out caption: runs validate on at most the first 64 (--n-heldout-max)."""


def unseen_pairs(model: str, n: int = 64, offset: int = UNSEEN_OFFSET) -> list[dict[str, Any]]:
    """``n`` held-out captions of ``model`` from ``offset`` on, each with an unseen seed."""
    from cachesearch.evaluate import builtin_prompts

    held = builtin_prompts(model, "heldout", offset + n)
    return [{"prompt": p, "seed": UNSEEN_SEED_BASE + i} for i, p in enumerate(held.prompts[offset:])]


def unseen_prompt_file(model: str, path: Path, n: int = 64, offset: int = UNSEEN_OFFSET, n_train: int = 1) -> Path:
    """A prompt file whose ``heldout`` split is :func:`unseen_pairs` and whose ``train`` split is the model's first
    ``n_train`` train captions with their usual seeds (what a run trains on). Evaluate with ``n_train=n_train,
    n_heldout=n``."""
    from cachesearch.evaluate import builtin_prompts

    train = builtin_prompts(model, "train", n_train)
    doc = {"train": [{"prompt": p, "seed": s} for p, s in zip(train.prompts, train.seeds)],
           "heldout": unseen_pairs(model, n, offset)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def unseen_evaluator(model: str, work: Path, *, steps: int = 20, n: int = 64, cache_dir: str | None = None,
                     batch_size: int = 16) -> Any:
    """An evaluator whose ``heldout`` split is the ``n`` unseen pairs of ``model``."""
    from cachesearch.evaluate import EvalConfig, Evaluator

    slug = model.replace(":", "-")
    file = unseen_prompt_file(model, work / f"unseen-{slug}-{n}.yaml", n)
    kwargs = {} if cache_dir is None else {"cache_dir": cache_dir}
    return Evaluator(EvalConfig(model=model, num_inference_steps=steps, n_train=1, n_heldout=n,
                                prompts_file=str(file), batch_size=batch_size, **kwargs))


def unseen_arguments(p: Any, *, work: Path, out: Path) -> None:
    """The options of a benchmark that scores static schedules of one model on its unseen pairs."""
    p.add_argument("--model", default="embedded:shapes-flux")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--n", type=int, default=64, help="unseen pairs")
    p.add_argument("--cache-dir", default=str(work.parents[1] / ".cache" / "cachesearch"))
    p.add_argument("--work", type=Path, default=work)
    p.add_argument("--out", type=Path, default=out)


def quiet_unseen_evaluator(args: Any) -> Any:
    """One thread, diffusers quiet, and :func:`unseen_evaluator` for the parsed :func:`unseen_arguments`."""
    import torch
    from diffusers.utils import logging as diffusers_logging

    torch.set_num_threads(1)
    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    return unseen_evaluator(args.model, args.work, steps=args.steps, n=args.n, cache_dir=args.cache_dir)


def unseen_scores(ev: Any, sched: Any, broken: float) -> dict[str, Any]:
    """A compiled schedule on the unseen pairs of ``ev`` (:func:`unseen_evaluator`): cost, the loss distribution
    (mean with its 95 % interval, median, p90, CVaR, max), the images over ``broken`` and the per-image losses.
    An invalid result stops the benchmark with its reason."""
    res = ev.evaluate(sched, split="heldout", measure=False)
    if not res.valid:
        raise SystemExit(f"{sched.name}: invalid ({res.reason})")
    s = res.summary(threshold=broken, interval=True)
    losses = [float(v) for v in res.losses]
    return {"cost": res.cost_ratio, "mean": s.mean, "ci95": list(s.ci95), "median": s.median, "p90": s.p90,
            "cvar": s.cvar, "max": s.max, "broken": sum(v > broken for v in losses), "n": s.n, "losses": losses}


def save_unseen(args: Any, ev: Any, benchmark: str, rows: list[dict[str, Any]], started: float,
                render: Any, **extra: Any) -> None:
    """Write a static-schedule benchmark's result (:func:`unseen_arguments`' ``--out``: model, steps, metric,
    environment, the unseen pairs' digest, ``extra``, the rows and the seconds since ``started``) and print
    ``render(doc)``."""
    import sys
    import time

    from _bench import environment, repo_relative, write_json

    doc = {"benchmark": benchmark, "model": args.model, "steps": args.steps, "metric": ev.metric_name,
           "environment": environment("cpu"), "unseen_prompts": ev.prompt_set("heldout").digest(), **extra,
           "schedules": rows, "seconds": round(time.perf_counter() - started, 1)}
    write_json(args.out, doc)
    print(render(doc))
    print(f"wrote {repo_relative(args.out)} in {doc['seconds']} s", file=sys.stderr)


def train_profile(args: Any, ev: Any, n: int | None = None) -> Any:
    """The block-change profile a run would make for :func:`unseen_arguments`' model and steps: the mean over the
    first ``n`` train prompts (default 8, the train split), computed with ``ev``'s model."""
    from cachesearch.evaluate import EvalConfig, Evaluator, profile_blocks

    prof_ev = Evaluator(EvalConfig(model=args.model, num_inference_steps=args.steps, n_train=8, n_heldout=1,
                                   batch_size=8, cache_dir=args.cache_dir), model=ev.model)
    return profile_blocks(prof_ev, n=n)
