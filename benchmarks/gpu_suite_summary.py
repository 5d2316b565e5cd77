"""Combine the GPU suite's part files into summary.json + summary.md and check issue 15's targets (PASS/MISS).

    python benchmarks/gpu_suite_summary.py DIR [--part NAME:RC:SECONDS ...]

Reads DIR/latency_sd15_b1.json, latency_sd15_b4.json, latency_sdxl.json (gpu_latency.py), step_profile.json
(step_profile.py) and search_sample.json (search_sample.py); any of them may be missing (a failed part).
Targets: all-R overhead <= 1 % (SD1.5, batch 1, PNDM); our DeepCache N=5 b0 speedup >= 1.2x the official
helper's and >= 90 % of the time-share bound N / (1 + (N - 1) * share); ours equals the helper on DDIM.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _row(rows: list[dict], **match: Any) -> dict | None:
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def _fmt(v: Any, spec: str = ".2f") -> str:
    return "–" if v is None else format(v, spec) if isinstance(v, (int, float)) else str(v)


def latency_table(rows: list[dict]) -> list[str]:
    """One line per (model, sampler, batch): vanilla ms, all-R overhead, fewer steps and DeepCache speedups."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["part"], r["model"], r["scheduler"], r["size"], r["batch"]), []).append(r)
    labels: list[str] = []
    for g in groups.values():
        for r in g:
            if r["config"].startswith(("fewer", "official", "cachesearch N")) and r["config"] not in labels:
                labels.append(r["config"])
    dc = sorted({lbl.split(" ", 1)[1] for lbl in labels if lbl.startswith(("official", "cachesearch N"))},
                key=lambda s: (int(s.split("=")[1].split()[0]), s))
    fewer = [lbl for lbl in labels if lbl.startswith("fewer")]
    head = (["part", "model", "sampler", "px", "batch", "vanilla ms", "all-R ovh %", "n"]
            + [f.replace("fewer steps ", "") + " steps" for f in fewer] + [f"{d} helper/ours" for d in dc])
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (part, model, sched, size, batch), g in groups.items():
        van = _row(g, config="vanilla")
        allr = _row(g, config="cachesearch all-R")
        cells = [part, model, sched.replace("Scheduler", ""), str(size), str(batch),
                 _fmt(van and van["median_ms"], ".0f"),
                 _fmt(allr and (allr["median_ms"] / van["median_ms"] - 1) * 100, "+.1f"),
                 str(min(r["n"] for r in g))]
        cells += [_fmt((_row(g, config=f) or {}).get("speedup")) + "×" for f in fewer]
        for d in dc:
            h, o = _row(g, config=f"official {d}"), _row(g, config=f"cachesearch {d}")
            cells.append(f"{_fmt(h and h['speedup'])}/{_fmt(o and o['speedup'])}")
        out.append("| " + " | ".join(cells) + " |")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--part", action="append", default=[], help="NAME:RC:SECONDS of a suite part.")
    ap.add_argument("--interval", type=int, default=5)
    ap.add_argument("--branch", type=int, default=0)
    args = ap.parse_args()
    d = args.dir
    parts = []
    for p in args.part:
        name, rc, secs = (p.split(":") + ["", ""])[:3]
        parts.append({"part": name, "rc": int(rc) if rc.lstrip("-").isdigit() else rc,
                      "seconds": float(secs) if secs else None})
    lat = {k: _load(d / f"latency_{k}.json") for k in ("sd15_b1", "sd15_b4", "sdxl")}
    prof = _load(d / "step_profile.json")
    search = _load(d / "search_sample.json")
    rows = [{**r, "part": k} for k, v in lat.items() if v for r in v.get("rows", [])]
    equality = [e for v in lat.values() if v for e in v.get("equality", [])]
    env = next((v["env"] for v in (*lat.values(), prof, search) if v and "env" in v), {})

    n, b = args.interval, args.branch
    targets: list[dict[str, Any]] = []
    b1 = [r for r in rows if r["part"] == "sd15_b1"]
    pndm = [r for r in b1 if r["scheduler"] == "PNDMScheduler"] or b1
    van, allr = _row(pndm, config="vanilla"), _row(pndm, config="cachesearch all-R")
    ovh = (allr["median_ms"] / van["median_ms"] - 1) * 100 if van and allr else None
    targets.append({"target": "all-R overhead <= 1 % (batch 1, PNDM)", "value": ovh, "ok": ovh is not None
                    and ovh <= 1.0, "shown": f"{_fmt(ovh, '+.2f')} %"})
    helper, ours = _row(pndm, config=f"official N={n} b{b}"), _row(pndm, config=f"cachesearch N={n} b{b}")
    ratio = ours["speedup"] / helper["speedup"] if helper and ours else None
    targets.append({"target": f"ours >= 1.2x the helper's speedup at N={n} b{b}", "value": ratio,
                    "ok": ratio is not None and ratio >= 1.2,
                    "shown": f"{_fmt(ours and ours['speedup'])}× vs {_fmt(helper and helper['speedup'])}× = "
                             f"{_fmt(ratio)}"})
    bound = next((x for x in (prof or {}).get("bounds", []) if x["interval"] == n and x["branch"] == b), None)
    frac = ours["speedup"] / bound["bound"] if ours and bound else None
    targets.append({"target": f"ours >= 90 % of the time-share bound at N={n} b{b}", "value": frac,
                    "ok": frac is not None and frac >= 0.9,
                    "shown": f"{_fmt(ours and ours['speedup'])}× of {_fmt(bound and bound['bound'])}× = "
                             f"{_fmt(frac and frac * 100, '.0f')} % (end-to-end bound "
                             f"{_fmt(bound and bound['bound_end_to_end'])}×)"})
    eq_ok = bool(equality) and all(e["equal_within_atol"] for e in equality)
    worst = max((e["max_abs_diff"] for e in equality), default=None)
    targets.append({"target": "ours == helper on DDIM (every N, b)", "value": worst, "ok": eq_ok,
                    "shown": f"max |diff| {_fmt(worst, '.1e')} over {len(equality)} settings"})
    few = [r for r in rows if r["n"] < 5]
    targets.append({"target": "median of >= 5 samples everywhere", "value": len(few), "ok": bool(rows) and not few,
                    "shown": f"{len(few)} of {len(rows)} rows below 5"})

    md = [f"# GPU suite: {env.get('device', '?')}", "",
          f"torch {env.get('torch')} · CUDA {env.get('cuda')} · diffusers {env.get('diffusers')} · DeepCache "
          f"{env.get('DeepCache')} · cachesearch {env.get('cachesearch')} · Python {env.get('python')} · "
          f"{env.get('date')}", "", "## Targets", "", "| target | measured | |", "|---|---|---|"]
    md += [f"| {t['target']} | {t['shown']} | {'PASS' if t['ok'] else 'MISS'} |" for t in targets]
    md += ["", "## Latency (speedup over vanilla of the same sampler and batch; random weights, CFG 7.5, VAE decode "
           "included)", ""] + latency_table(rows)
    if prof and prof.get("bounds"):
        md += ["", f"## Time-share bounds ({prof['model']}, {prof['scheduler']}, {prof['size']} px, denoiser call "
               f"{_fmt(prof.get('call_ms'))} ms, pipeline {_fmt(prof.get('pipeline_ms'), '.0f')} ms, "
               f"{prof.get('calls_per_pipeline')} calls)", "", "| N | b | share | bound | end-to-end bound |",
               "|---|---|---|---|---|"]
        md += [f"| {x['interval']} | {x['branch']} | {x['share']:.3f} | {x['bound']:.2f}× | "
               f"{x['bound_end_to_end']:.2f}× |" for x in prof["bounds"]]
    if prof and prof.get("traces"):
        md += ["", "## One denoiser call under torch.profiler", "",
               "| config | wall ms | kernels | launches | GPU busy | gaps µs (total/median/max) | syncs | DtoH | "
               "item() | aten ops | top kernel |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for t in prof["traces"]:
            top = (t.get("top_kernels") or t.get("top_cpu_ops") or [{}])[0].get("name", "–")
            md.append(f"| {t['config']} | {_fmt(t.get('wall_ms'))} | {_fmt(t.get('kernels'), 'd')} | "
                      f"{_fmt(t.get('launches'), 'd')} | {_fmt(t.get('gpu_busy_fraction'))} | "
                      f"{_fmt(t.get('gap_total_us'), '.0f')}/{_fmt(t.get('gap_median_us'), '.1f')}/"
                      f"{_fmt(t.get('gap_max_us'), '.0f')} | {sum((t.get('syncs') or {}).values())} | "
                      f"{_fmt(t.get('memcpy_dtoh'), 'd')} | {sum((t.get('host_scalar_reads') or {}).values())} | "
                      f"{_fmt(t.get('cpu_ops'), 'd')} | {str(top)[:48]} |" + (f" error: {t['error']}" if
                                                                             t.get("error") else ""))
    if search:
        tr = search.get("trials", {})
        sp = search.get("split_s", {})
        md += ["", f"## Search sample ({search.get('settings', {}).get('model')}, "
               f"{search.get('settings', {}).get('device')}, timeout {search.get('settings', {}).get('timeout')} s; "
               f"{search.get('note', '')})", "",
               f"{tr.get('trials')} trials in the loop ({_fmt(tr.get('trials_per_hour'), '.0f')}/h; "
               f"{_fmt(tr.get('trials_per_hour_wall'), '.0f')}/h over the whole run), median trial "
               f"{_fmt(tr.get('trial_median_s'))} s. Split (s): " + ", ".join(f"{k[:-2]} {v:.1f}" for k, v in
                                                                            sp.items()) +
               f"; inside the loop: candidates {_fmt(tr.get('candidates_s'), '.1f')}, search overhead "
               f"{_fmt(tr.get('search_overhead_s'), '.1f')}. Errors: {search.get('errors') or 'none'}"]
    if parts:
        md += ["", "## Parts", "", "| part | rc | seconds |", "|---|---|---|"]
        md += [f"| {p['part']} | {p['rc']} | {_fmt(p['seconds'], '.0f')} |" for p in parts]
    errors = [f"{k}: {e}" for k, v in {**lat, "step_profile": prof, "search": search}.items() if v
              for e in v.get("errors", [])]
    if errors:
        md += ["", "## Errors", ""] + [f"- {e}" for e in errors]
    text = "\n".join(md) + "\n"
    (d / "summary.md").write_text(text)
    (d / "summary.json").write_text(json.dumps({"env": env, "targets": targets, "parts": parts, "errors": errors,
                                                 "rows": [{k: v for k, v in r.items() if k != "samples_ms"}
                                                          for r in rows], "equality": equality,
                                                 "bounds": (prof or {}).get("bounds")}, indent=2, default=str) + "\n")
    print(text)
    for t in targets:
        print(f"{'PASS' if t['ok'] else 'MISS'}  {t['target']}: {t['shown']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
