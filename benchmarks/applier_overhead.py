"""Applier overhead (issue 3): vanilla vs cachesearch all-R vs DeepCache N=3/N=5 (b=0), ours and official.

CPU (tiny random pipeline, many repeats because one call takes milliseconds):
    python benchmarks/applier_overhead.py --model tiny --steps 50 --repeats 30
GPU (SD1.5 architecture, random weights, fp16, 512 px, 50 steps, CFG 7.5):
    python benchmarks/applier_overhead.py --model sd15 --device cuda --repeats 10

Prints a markdown table and writes ``benchmarks/results/applier_overhead_<model>_<device>.json``.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import torch
from _bench import environment, make_call, nothing, official_deepcache, table, time_config, write_results

import cachesearch as cs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny", choices=["tiny", "sd15"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.model == "tiny":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test-only tiny pipelines
        from tests._tiny import tiny_sd_pipeline

        pipe = tiny_sd_pipeline(seed=0, blocks=3).to(args.device)
        size = args.size or 64
    else:
        from cachesearch.models import load_model

        dtype = torch.float16 if args.device.startswith("cuda") else torch.float32
        pipe = load_model("arch:sd15", device=args.device, dtype=dtype).pipe
        size = args.size or 512
    pipe.set_progress_bar_config(disable=True)
    call = make_call(pipe, prompt="a red circle on a blue background", steps=args.steps, guidance=7.5, batch=1,
                     size=size, output_type="pt")
    timed = functools.partial(time_config, call=call, device=args.device, warmup=args.warmup, repeats=args.repeats)
    configs = [("vanilla", nothing)]
    full = cs.compile_schedule(pipe, cs.Full(), num_inference_steps=args.steps)
    configs.append(("cachesearch all-R", lambda: full.applied(pipe)))
    for n in (3, 5):
        sched = cs.compile_schedule(pipe, cs.DeepCache(interval=n, branch=0), num_inference_steps=args.steps)
        configs.append((f"official DeepCache N={n} b0", lambda n=n: official_deepcache(pipe, n, 0)))
        configs.append((f"cachesearch DeepCache N={n} b0", lambda s=sched: s.applied(pipe)))
    env = environment(args.device)
    print(f"# {env['device']} · torch {env['torch']} · diffusers {env['diffusers']} · {env['date']}")
    rows = []
    # Interleave rounds so slow drifts of a shared machine hit every configuration alike.
    rounds = 3
    per_round = max(args.repeats // rounds, 1)
    samples: dict[str, list[float]] = {label: [] for label, _ in configs}
    for _ in range(rounds):
        for label, ctx in configs:
            samples[label] += list(timed(ctx, repeats=per_round)["samples_ms"])
    base = sorted(samples["vanilla"])[len(samples["vanilla"]) // 2]
    for label, _ in configs:
        s = sorted(samples[label])
        med = s[len(s) // 2]
        rows.append({"config": label, "median_ms": med, "p25_ms": s[len(s) // 4], "p75_ms": s[(3 * len(s)) // 4],
                     "overhead_or_speedup": (med / base - 1) * 100 if "all-R" in label else base / med,
                     "n": len(s)})
    print(table(rows, [("config", "config"), ("median_ms", "median ms"), ("p25_ms", "p25"), ("p75_ms", "p75"),
                       ("overhead_or_speedup", "all-R overhead % / speedup x"), ("n", "n")]))
    path = write_results(f"applier_overhead_{args.model}_{'cuda' if args.device.startswith('cuda') else 'cpu'}",
                         {"env": env, "args": vars(args), "rows": rows, "samples_ms": samples})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
