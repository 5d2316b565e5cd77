"""Latency of cachesearch's applier vs the official DeepCache helper vs fewer steps (issues 7 and 15).

GPU (the intended run; benchmarks/gpu_suite.sh drives it):
    python benchmarks/gpu_latency.py --device cuda --models sd15 --schedulers pndm ddim --batch 1
    (sd15 at 512 px, sdxl at 1024 px, fp16, 50 steps, CFG 7.5, VAE decode included, median of >= 5)
CPU (what a session without a GPU can check; issue 7 point 4):
    python benchmarks/gpu_latency.py --device cpu --models sd15 --size 256 --steps 10 --repeats 3

Configurations: vanilla, cachesearch all-R (the applier with nothing cached: its pure overhead), fewer steps,
and for every N in --intervals and b in --branches the official DeepCache helper and our DeepCache(N, b).
They are timed in interleaved rounds (one pass over all configurations per round, so a drifting machine hits
all alike); ``--budget-s`` stops starting rounds once the next would overrun it (rows record ``n``).
Results are written after every (scheduler, batch) block, so a run killed at its limit leaves what it did.

Also checks that our DeepCache output equals the official helper's at the same settings, on DDIM (PNDM's
repeated first timestep makes the helper's ``timesteps.index(t)`` step counter differ from ours: issue 13
point 9).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from pathlib import Path

import torch
from _bench import (
    RESULTS,
    SCHEDULERS,
    default_size,
    environment,
    load_pipe,
    make_call,
    model_spec,
    nothing,
    official_deepcache,
    outputs_match,
    set_scheduler,
    table,
    time_config,
    write_json,
)

import cachesearch as cs

PROMPT = "a photo of an astronaut"


def configurations(pipe, args: argparse.Namespace) -> list[tuple[str, object, int]]:
    """(label, context factory, steps) of every configuration, for the pipeline's current scheduler."""
    configs: list[tuple[str, object, int]] = [("vanilla", nothing, args.steps)]
    if not args.no_all_r:
        full = cs.compile_schedule(pipe, cs.Full(), num_inference_steps=args.steps)
        configs.append(("cachesearch all-R", lambda s=full: s.applied(pipe), args.steps))
    configs += [(f"fewer steps {k}", nothing, k) for k in args.fewer]
    for interval in args.intervals:
        for branch in args.branches:
            sched = cs.compile_schedule(pipe, cs.DeepCache(interval=interval, branch=branch),
                                        num_inference_steps=args.steps)
            configs.append((f"official N={interval} b{branch}",
                            lambda n=interval, b=branch: official_deepcache(pipe, n, b), args.steps))
            configs.append((f"cachesearch N={interval} b{branch}", lambda s=sched: s.applied(pipe), args.steps))
    return configs


def bench_block(pipe, name: str, scheduler: str, batch: int, size: int, args: argparse.Namespace,
                deadline: float | None) -> tuple[list[dict], dict]:
    """Time every configuration at one (scheduler, batch); returns rows and what happened."""
    device = args.device
    configs = configurations(pipe, args)
    calls = {k: make_call(pipe, prompt=PROMPT, steps=k, guidance=args.guidance, batch=batch, size=size,
                          output_type=args.output_type)
             for k in {c[2] for c in configs}}
    samples: dict[str, list[float]] = {label: [] for label, _, _ in configs}
    peaks: dict[str, int | None] = {}
    per_round = max(args.repeats // args.rounds, 1)
    rounds_done, stopped = 0, "rounds"
    round_s = 0.0
    for rnd in range(args.rounds):
        if deadline is not None and rnd > 0 and time.monotonic() + round_s > deadline:
            stopped = "budget"
            break
        t0 = time.monotonic()
        for label, ctx, k in configs:
            warm = args.warmup if rnd == 0 and (args.warmup_configs == "all" or label == "vanilla") else 0
            r = time_config(ctx, calls[k], device=device, warmup=warm, repeats=per_round)
            samples[label] += r["samples_ms"]
            peaks[label] = r["peak_memory_bytes"]
            print(f"  {name} {scheduler} b{batch} round {rnd} {label:28s} {r['median_ms']:9.1f} ms", flush=True)
        rounds_done += 1
        round_s = time.monotonic() - t0  # round 0 includes the warm-up: an overestimate, on the safe side
    rows: list[dict] = []
    for label, _, k in configs:
        v = sorted(samples[label])
        rows.append({"model": name, "scheduler": scheduler, "size": size, "batch": batch, "steps": k,
                     "config": label, "median_ms": statistics.median(v), "min_ms": v[0], "max_ms": v[-1],
                     "iqr_ms": (v[(3 * len(v)) // 4] - v[len(v) // 4]) if len(v) > 1 else 0.0, "n": len(v),
                     "samples_ms": v, "peak_memory_bytes": peaks.get(label)})
    base = rows[0]["median_ms"]
    for r in rows:
        r["speedup"] = base / r["median_ms"]
    return rows, {"scheduler": scheduler, "batch": batch, "rounds_done": rounds_done, "stopped": stopped}


def equality_check(pipe, name: str, size: int, args: argparse.Namespace) -> list[dict]:
    """Max |ours − helper| on [0, 1] images for every (N, b), on the equality scheduler (DDIM)."""
    call_pt = make_call(pipe, prompt=PROMPT, steps=args.steps, guidance=args.guidance, batch=1, size=size,
                        output_type="pt")
    atol = 1e-2 if args.device.startswith("cuda") else 1e-4
    out = []
    for interval in args.intervals:
        for branch in args.branches:
            sched = cs.compile_schedule(pipe, cs.DeepCache(interval=interval, branch=branch),
                                        num_inference_steps=args.steps)
            r = outputs_match(pipe, lambda s=sched: s.applied(pipe),
                              lambda n=interval, b=branch: official_deepcache(pipe, n, b), call_pt, atol)
            r.update(model=name, scheduler=type(pipe.scheduler).__name__, interval=interval, branch=branch)
            print(f"  equality {name} {r['scheduler']} N={interval} b{branch}: max |diff| = "
                  f"{r['max_abs_diff']:.2e} ({'ok' if r['equal_within_atol'] else 'DIFFERENT'})", flush=True)
            out.append(r)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", nargs="+", default=["sd15", "sdxl"],
                    help="sd15, sdxl or any load_model spec (embedded, arch:sd15, a pipeline folder).")
    ap.add_argument("--schedulers", nargs="+", default=["default"], choices=SCHEDULERS,
                    help="Samplers to time on (default: the model's own; SD1.5's is PNDM, the anchor's).")
    ap.add_argument("--size", type=int, default=None, help="Image size (default 512 for sd15, 1024 for sdxl).")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--fewer", type=int, nargs="*", default=[25, 20, 10])
    ap.add_argument("--intervals", type=int, nargs="+", default=[2, 3, 5])
    ap.add_argument("--branches", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--no-all-r", action="store_true", help="Skip the all-R (applier overhead) configuration.")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--warmup-configs", choices=["all", "first"], default="all",
                    help="Warm up every configuration in round 0, or only the first (vanilla: same kernels).")
    ap.add_argument("--repeats", type=int, default=6, help="Timed runs per configuration (over all rounds).")
    ap.add_argument("--rounds", type=int, default=3, help="Interleaved rounds over all configurations.")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="Stop starting rounds (after the first) once the next one would end past this many "
                         "seconds from the start of the timing; rows record how many samples they got.")
    ap.add_argument("--output-type", default="pil", help="Pipeline output type timed (pil includes VAE decode).")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (CPU runs).")
    ap.add_argument("--skip-equality", action="store_true")
    ap.add_argument("--equality-scheduler", default="ddim", choices=SCHEDULERS)
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON output file (default benchmarks/results/latency_<device>_<date>.json).")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    env = environment(args.device)
    print(f"# {env['device']} · torch {env['torch']} · diffusers {env['diffusers']} · {env['date']}", flush=True)
    tag = "cuda" if args.device.startswith("cuda") else "cpu"
    path = args.out or RESULTS / f"latency_{tag}_{dt.date.today().isoformat()}.json"
    start = time.monotonic()
    deadline = start + args.budget_s if args.budget_s else None
    rows: list[dict] = []
    equal: list[dict] = []
    blocks: list[dict] = []
    errors: list[str] = []

    def save() -> None:
        write_json(path, {"env": env, "args": vars(args), "rows": rows, "equality": equal, "blocks": blocks,
                          "errors": errors, "seconds": time.monotonic() - start})

    for name in args.models:
        t_load = time.monotonic()
        pipe = load_pipe(name, args.device)
        blocks.append({"model": model_spec(name), "load_s": time.monotonic() - t_load})
        size = args.size or default_size(name, pipe)
        original = pipe.scheduler
        for scheduler in args.schedulers:
            sched_name = set_scheduler(pipe, scheduler, original)
            for batch in args.batch:
                try:
                    r, info = bench_block(pipe, name, sched_name, batch, size, args, deadline)
                except Exception as e:  # noqa: BLE001 - record and go on with the next block
                    errors.append(f"{name} {sched_name} b{batch}: {type(e).__name__}: {e}")
                    print(f"  ERROR {errors[-1]}", flush=True)
                    continue
                rows += r
                blocks.append(info)
                save()
        if not args.skip_equality:
            set_scheduler(pipe, args.equality_scheduler, original)
            try:
                equal += equality_check(pipe, name, size, args)
            except Exception as e:  # noqa: BLE001
                errors.append(f"equality {name}: {type(e).__name__}: {e}")
                print(f"  ERROR {errors[-1]}", flush=True)
        pipe.scheduler = original
        del pipe
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
        save()
    print(table(rows, [("model", "model"), ("scheduler", "sampler"), ("size", "px"), ("batch", "batch"),
                       ("config", "config"), ("median_ms", "median ms"), ("iqr_ms", "IQR ms"), ("n", "n"),
                       ("speedup", "speedup")]))
    save()
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
