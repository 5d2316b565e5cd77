"""Per-block time shares, the DeepCache time-share bound, and a torch.profiler summary of one denoiser step.

Issue 15: "per-block time shares give a time-share bound": on a cached DeepCache step only the blocks of the
cached branch still run (plus what lies outside every stage: embeddings, conv_in/out). With ``share`` the
fraction of a full denoiser call's time spent there, N-interval DeepCache can at best reach

    bound(N) = N / (1 + (N - 1) * share)          (denoiser time only)

and, with the pipeline's fixed time (text encoder, VAE decode, scheduler) added back, an end-to-end bound.
The blocks of each branch come from cachesearch's adapter (``block_space(unet).deepcache_branches``).

The trace part profiles exactly one denoiser call (profiler started in a forward pre-hook, stopped in the
post-hook after a synchronize) of: vanilla (a full step), ours at DeepCache(N, b) and the official helper, on
a call that is a cached step for both. It reports the top kernels by device time, kernel launches, the gaps
between kernels on the GPU timeline, host syncs (cudaStreamSynchronize/cudaDeviceSynchronize/
cudaEventSynchronize, device-to-host copies, aten::item/_local_scalar_dense) and the top CPU ops.

    python benchmarks/step_profile.py --device cuda --model sd15 --scheduler pndm --out step_profile.json
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from _bench import (
    SCHEDULERS,
    default_size,
    environment,
    load_pipe,
    make_call,
    model_spec,
    nothing,
    official_deepcache,
    set_scheduler,
    write_json,
)

import cachesearch as cs
from cachesearch.models import block_space

PROMPT = "a photo of an astronaut"
LAUNCH_NAMES = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx",
                "cudaGraphLaunch", "cudaLaunchCooperativeKernel")
SYNC_NAMES = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaStreamWaitEvent")
HOST_SCALAR_NAMES = ("aten::item", "aten::_local_scalar_dense", "aten::is_nonzero")


class _Clock:
    """Marks on the device timeline (CUDA events) or the host clock (CPU)."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")

    def mark(self) -> Any:
        if self.cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    def ms(self, a: Any, b: Any) -> float:
        return float(a.elapsed_time(b)) if self.cuda else (b - a) * 1e3

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


def capture_inputs(pipe: Any, call: Any) -> tuple[tuple, dict, int]:
    """The (args, kwargs) of the pipeline's first denoiser call, and how many calls one pipeline call makes."""
    seen: dict[str, Any] = {"n": 0}

    def hook(_m: Any, args: tuple, kwargs: dict) -> None:
        if seen["n"] == 0:
            seen["args"] = tuple(a.clone() if torch.is_tensor(a) else a for a in args)
            seen["kwargs"] = {k: v.clone() if torch.is_tensor(v) else v for k, v in kwargs.items()}
        seen["n"] += 1

    h = pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        call()
    finally:
        h.remove()
    return seen["args"], seen["kwargs"], seen["n"]


def block_times(pipe: Any, inputs: tuple[tuple, dict], device: str, repeats: int) -> dict[str, Any]:
    """Median time of each block of the adapter's block space in one denoiser call, and of the whole call."""
    clock = _Clock(device)
    unet = pipe.unet
    space = block_space(unet)
    args, kwargs = inputs
    marks: dict[str, list] = {}
    handles = []
    for b in space.blocks:
        mod = unet.get_submodule(b.name)
        handles.append(mod.register_forward_pre_hook(lambda _m, _a, n=b.name: marks.__setitem__(n, [clock.mark()])))
        handles.append(mod.register_forward_hook(lambda _m, _a, _o, n=b.name: marks[n].append(clock.mark())))
    per_block: dict[str, list[float]] = {b.name: [] for b in space.blocks}
    totals: list[float] = []
    try:
        with torch.no_grad():
            unet(*args, **kwargs)  # warm-up
            for _ in range(repeats):
                marks.clear()
                t0 = clock.mark()
                unet(*args, **kwargs)
                t1 = clock.mark()
                clock.sync()
                totals.append(clock.ms(t0, t1))
                for name, m in marks.items():
                    if len(m) == 2:
                        per_block[name].append(clock.ms(m[0], m[1]))
    finally:
        for h in handles:
            h.remove()
    clean: list[float] = []
    with torch.no_grad():
        for _ in range(repeats):
            t0 = clock.mark()
            unet(*args, **kwargs)
            t1 = clock.mark()
            clock.sync()
            clean.append(clock.ms(t0, t1))
    med = {k: statistics.median(v) for k, v in per_block.items() if v}
    total = statistics.median(totals)
    stages = [b.name for b in space.blocks if b.parent is None]
    outside = total - sum(med.get(s, 0.0) for s in stages)
    shares = []
    for branch, kept in enumerate(space.deepcache_branches):
        kept_ms = sum(med.get(k, 0.0) for k in kept)
        shares.append({"branch": branch, "kept_blocks": sorted(kept), "kept_ms": kept_ms,
                       "share": (outside + kept_ms) / total})
    return {"call_ms_hooked": total, "call_ms": statistics.median(clean), "outside_stages_ms": outside,
            "stages": stages, "block_ms": med, "branch_shares": shares}


def bounds(shares: list[dict], call_ms: float, pipe_ms: float, calls: int, intervals: list[int],
           branches: list[int]) -> list[dict]:
    """Time-share bounds for each (N, b): denoiser-only (the issue's formula) and end-to-end."""
    fixed = max(pipe_ms - calls * call_ms, 0.0)
    out = []
    for b in branches:
        if b >= len(shares):
            continue
        s = shares[b]["share"]
        for n in intervals:
            denoise = calls * call_ms * (1 / n + (1 - 1 / n) * s)
            out.append({"interval": n, "branch": b, "share": s, "bound": n / (1 + (n - 1) * s),
                        "bound_end_to_end": pipe_ms / (fixed + denoise)})
    return out


@contextlib.contextmanager
def _profile_one_call(unet: torch.nn.Module, index: int, device: str, result: dict) -> Any:
    """Profile only the ``index``-th denoiser call made inside the block (pre-hook first, before the applier's)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    state = {"n": 0, "prof": None, "t0": 0.0}

    def pre(_m: Any, _a: Any) -> None:
        if state["n"] == index:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            state["prof"] = profile(activities=activities, record_shapes=False)
            state["prof"].start()
            state["t0"] = time.perf_counter()
        state["n"] += 1

    def post(_m: Any, _a: Any, _o: Any) -> None:
        if state["prof"] is not None and "prof" not in result:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            result["wall_ms"] = (time.perf_counter() - state["t0"]) * 1e3
            state["prof"].stop()
            result["prof"] = state["prof"]

    h1 = unet.register_forward_pre_hook(pre, prepend=True)
    h2 = unet.register_forward_hook(post)
    try:
        yield
    finally:
        h1.remove()
        h2.remove()


def _attr(e: Any, *names: str) -> float:
    for n in names:
        v = getattr(e, n, None)
        if v is not None:
            return float(v)
    return 0.0


def summarize_trace(prof: Any, top: int) -> dict[str, Any]:
    """Top kernels, launches, kernel gaps and host syncs of one profiled call."""
    events = list(prof.events())
    is_dev = [getattr(e, "device_type", None) is not None and "CUDA" in str(e.device_type) for e in events]
    kernels = sorted((e for e, d in zip(events, is_dev) if d), key=lambda e: e.time_range.start)
    cpu = [e for e, d in zip(events, is_dev) if not d]
    names = [e.name for e in cpu]
    out: dict[str, Any] = {
        "kernels": len(kernels),
        "launches": sum(names.count(n) for n in LAUNCH_NAMES),
        "syncs": {n: names.count(n) for n in SYNC_NAMES if names.count(n)},
        "memcpy_dtoh": sum("DtoH" in e.name or "Device -> Pageable" in e.name or "Device -> Pinned" in e.name
                           for e, d in zip(events, is_dev) if d),
        "cudaMemcpy_calls": sum(n.startswith("cudaMemcpy") for n in names),
        "host_scalar_reads": {n: names.count(n) for n in HOST_SCALAR_NAMES if names.count(n)},
        "cpu_ops": sum(n.startswith("aten::") for n in names),
    }
    if kernels:
        starts = [k.time_range.start for k in kernels]
        ends = [k.time_range.end for k in kernels]
        busy = sum(e - s for s, e in zip(starts, ends))
        gaps = [max(starts[i] - max(ends[:i]), 0.0) for i in range(1, len(kernels))]
        span = max(ends) - starts[0]
        out.update({
            "gpu_span_us": span, "kernel_time_us": busy, "gpu_busy_fraction": busy / span if span else None,
            "gap_total_us": sum(gaps), "gap_median_us": statistics.median(gaps) if gaps else 0.0,
            "gap_max_us": max(gaps) if gaps else 0.0, "gaps_over_10us": sum(g > 10 for g in gaps),
            "mean_kernel_us": busy / len(kernels),
        })
    rows = []
    for a in prof.key_averages():
        rows.append({"name": a.key, "count": int(a.count),
                     "self_device_us": _attr(a, "self_device_time_total", "self_cuda_time_total"),
                     "self_cpu_us": _attr(a, "self_cpu_time_total")})
    dev_rows = [r for r in rows if r["self_device_us"] > 0]
    out["top_kernels"] = sorted(dev_rows, key=lambda r: -r["self_device_us"])[:top]
    out["top_cpu_ops"] = sorted(rows, key=lambda r: -r["self_cpu_us"])[:top]
    return out


def trace_configs(pipe: Any, args: argparse.Namespace, size: int, calls: int) -> list[dict]:
    """Profile one denoiser call of vanilla, ours and the helper at DeepCache(N, b)."""
    n, b = args.interval, args.branch
    sched = cs.compile_schedule(pipe, cs.DeepCache(interval=n, branch=b), num_inference_steps=args.steps)
    index = min(args.call_index, calls - 1)
    configs = [("vanilla (full step)", nothing), (f"cachesearch N={n} b{b} (cached step)", lambda: sched.applied(pipe)),
               (f"official N={n} b{b} (cached step)", lambda: official_deepcache(pipe, n, b))]
    call = make_call(pipe, prompt=PROMPT, steps=args.steps, guidance=args.guidance, batch=args.batch, size=size,
                     output_type="pt")
    out = []
    for label, ctx in configs:
        rec: dict[str, Any] = {"config": label, "call_index": index}
        try:
            with ctx():
                call()  # warm-up inside the configuration
                result: dict[str, Any] = {}
                with _profile_one_call(pipe.unet, index, args.device, result):
                    call()
            rec["wall_ms"] = result.get("wall_ms")
            rec.update(summarize_trace(result["prof"], args.top))
        except Exception as e:  # noqa: BLE001 - record and go on
            rec["error"] = f"{type(e).__name__}: {e}"
        print(f"  trace {label}: " + ", ".join(f"{k}={rec.get(k)}" for k in
                                               ("wall_ms", "kernels", "launches", "syncs", "memcpy_dtoh",
                                                "gap_total_us", "gpu_busy_fraction", "error") if k in rec),
              flush=True)
        out.append(rec)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--model", default="sd15")
    ap.add_argument("--scheduler", default="pndm", choices=SCHEDULERS)
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=10, help="Timed denoiser calls for the block shares.")
    ap.add_argument("--pipe-repeats", type=int, default=3, help="Timed pipeline calls for the fixed time.")
    ap.add_argument("--intervals", type=int, nargs="+", default=[2, 3, 5])
    ap.add_argument("--branches", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--interval", type=int, default=5, help="DeepCache N of the traced cached step.")
    ap.add_argument("--branch", type=int, default=0, help="DeepCache b of the traced cached step.")
    ap.add_argument("--call-index", type=int, default=2,
                    help="Denoiser call to trace (2: step 1 on PNDM and DDIM, cached at every N >= 2).")
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("step_profile.json"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    env = environment(args.device)
    t_start = time.monotonic()
    pipe = load_pipe(args.model, args.device)
    sched_name = set_scheduler(pipe, args.scheduler)
    size = args.size or default_size(args.model, pipe)
    doc: dict[str, Any] = {"env": env, "args": vars(args), "model": model_spec(args.model), "scheduler": sched_name,
                           "size": size, "errors": []}
    call = make_call(pipe, prompt=PROMPT, steps=args.steps, guidance=args.guidance, batch=args.batch, size=size,
                     output_type="pil")
    try:
        a, kw, calls = capture_inputs(pipe, call)
        from cachesearch.evaluate import measure_latency

        pipe_ms = measure_latency(call, warmup=0, repeats=args.pipe_repeats, device=args.device).median_ms
        shares = block_times(pipe, (a, kw), args.device, args.repeats)
        doc.update(calls_per_pipeline=calls, pipeline_ms=pipe_ms, **shares,
                   bounds=bounds(shares["branch_shares"], shares["call_ms"], pipe_ms, calls, args.intervals,
                                 args.branches))
        for r in doc["bounds"]:
            print(f"  bound N={r['interval']} b{r['branch']}: share {r['share']:.3f} -> {r['bound']:.2f}x "
                  f"(end to end {r['bound_end_to_end']:.2f}x)", flush=True)
        del a, kw
    except Exception as e:  # noqa: BLE001
        doc["errors"].append(f"shares: {type(e).__name__}: {e}")
        print(f"  ERROR {doc['errors'][-1]}", flush=True)
        calls = args.steps
    write_json(args.out, doc)
    doc["traces"] = trace_configs(pipe, args, size, calls)
    doc["seconds"] = time.monotonic() - t_start
    write_json(args.out, doc)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
