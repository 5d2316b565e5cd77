"""Latency of cachesearch's applier vs the official DeepCache helper vs fewer steps (issue 7).

GPU (the intended run; H100):
    python benchmarks/gpu_latency.py --device cuda --models sd15 sdxl --batch 1 4
    (sd15 at 512 px, sdxl at 1024 px, fp16, 50 steps, CFG 7.5, VAE decode included, median of >= 5)
CPU (what a session without a GPU can check; issue 7 point 4):
    python benchmarks/gpu_latency.py --device cpu --models sd15 --size 256 --steps 10 --repeats 3

Prints a markdown table and writes ``benchmarks/results/latency_<device>_<date>.json`` with device, versions
and date. Also checks that our DeepCache output equals the official helper's at the same settings (DDIM is
used for that check: PNDM's repeated first timestep makes the helper's `timesteps.index(t)` step counter skip
an index, so the two step counters differ there by design).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics

import torch
from _bench import environment, make_call, nothing, official_deepcache, outputs_match, table, time_config, write_results

import cachesearch as cs
from cachesearch.models import load_model

DEFAULT_SIZE = {"sd15": 512, "sdxl": 1024}


def bench_model(name: str, args: argparse.Namespace) -> list[dict]:
    device = args.device
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    loaded = load_model(f"arch:{name}", device=device, dtype=dtype)
    pipe = loaded.pipe
    pipe.set_progress_bar_config(disable=True)
    size = args.size or DEFAULT_SIZE[name]
    rows: list[dict] = []
    for batch in args.batch:
        configs: list[tuple[str, object, int]] = [("vanilla", nothing, args.steps)]
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
        calls = {k: make_call(pipe, prompt="a photo of an astronaut", steps=k, guidance=7.5, batch=batch, size=size)
                 for k in {c[2] for c in configs}}
        # Rounds interleave the configurations so a drifting, shared machine hits all of them alike.
        samples: dict[str, list[float]] = {label: [] for label, _, _ in configs}
        peaks: dict[str, int | None] = {}
        per_round = max(args.repeats // args.rounds, 1)
        for rnd in range(args.rounds):
            for label, ctx, k in configs:
                r = time_config(ctx, calls[k], device=device, warmup=args.warmup if rnd == 0 else 0,
                                repeats=per_round)
                samples[label] += r["samples_ms"]
                peaks[label] = r["peak_memory_bytes"]
                print(f"  {name} b{batch} round {rnd} {label:28s} {r['median_ms']:9.1f} ms", flush=True)
        for label, _, _ in configs:
            v = sorted(samples[label])
            rows.append({"model": name, "size": size, "batch": batch, "config": label,
                         "median_ms": statistics.median(v), "min_ms": v[0], "max_ms": v[-1],
                         "iqr_ms": (v[(3 * len(v)) // 4] - v[len(v) // 4]) if len(v) > 1 else 0.0,
                         "samples_ms": v, "peak_memory_bytes": peaks[label]})
        base = rows[-len(configs)]["median_ms"]
        for r in rows[-len(configs):]:
            r["speedup"] = base / r["median_ms"]
    return rows


def equality_check(name: str, args: argparse.Namespace) -> list[dict]:
    from diffusers import DDIMScheduler

    device = args.device
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    pipe = load_model(f"arch:{name}", device=device, dtype=dtype).pipe
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    size = args.size or DEFAULT_SIZE[name]
    call_pt = make_call(pipe, prompt="a photo of an astronaut", steps=args.steps, guidance=7.5, batch=1, size=size,
                        output_type="pt")
    atol = 1e-2 if dtype == torch.float16 else 1e-4
    out = []
    for interval in args.intervals:
        for branch in args.branches:
            sched = cs.compile_schedule(pipe, cs.DeepCache(interval=interval, branch=branch),
                                        num_inference_steps=args.steps)
            r = outputs_match(pipe, lambda s=sched: s.applied(pipe),
                              lambda n=interval, b=branch: official_deepcache(pipe, n, b), call_pt, atol)
            r.update(model=name, interval=interval, branch=branch)
            print(f"  equality {name} N={interval} b{branch}: max |diff| = {r['max_abs_diff']:.2e}", flush=True)
            out.append(r)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", nargs="+", default=["sd15", "sdxl"], choices=["sd15", "sdxl"])
    ap.add_argument("--size", type=int, default=None, help="Image size (default 512 for sd15, 1024 for sdxl).")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--fewer", type=int, nargs="*", default=[25, 20, 10])
    ap.add_argument("--intervals", type=int, nargs="+", default=[2, 3, 5])
    ap.add_argument("--branches", type=int, nargs="+", default=[0, 1, 3])
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=6, help="Timed runs per configuration (over all rounds).")
    ap.add_argument("--rounds", type=int, default=3, help="Interleaved rounds over all configurations.")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (CPU runs).")
    ap.add_argument("--skip-equality", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    env = environment(args.device)
    print(f"# {env['device']} · torch {env['torch']} · diffusers {env['diffusers']} · {env['date']}")
    rows, equal = [], []
    for name in args.models:
        rows += bench_model(name, args)
        if not args.skip_equality:
            equal += equality_check(name, args)
    print(table(rows, [("model", "model"), ("size", "px"), ("batch", "batch"), ("config", "config"),
                       ("median_ms", "median ms"), ("iqr_ms", "IQR ms"), ("speedup", "speedup")]))
    tag = "cuda" if args.device.startswith("cuda") else "cpu"
    path = write_results(f"latency_{tag}_{dt.date.today().isoformat()}",
                         {"env": env, "args": vars(args), "rows": rows, "equality": equal})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
