"""A timed search sample: what `cachesearch run` does, with its wall time split into its parts (issue 15 point 3).

Runs the same function the CLI runs (``cachesearch.search.run_search`` with the CLI's settings), equivalent to

    cachesearch run --model arch:sd15 --latency measured --timeout 120 --device cuda \
        --out RUNS --cache-dir CACHE --name gpu-sample

but with a progress receiver that timestamps every stage, so the JSON it writes splits the wall time into
model load, reference images, profiling, the trial loop (candidate evaluations vs the search's own overhead:
sampling, bookkeeping, duplicate checks) and export (held-out validation, report), and gives trials/hour.
On random weights (arch:*) the latency numbers are real and the quality numbers mean nothing.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _bench import environment, write_json


class TimedProgress:
    """A cachesearch ``Progress`` receiver that records (time, kind, text) of every event."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.events: list[tuple[float, str, str]] = []
        self.last_stage = ""
        self.in_loop = False
        self.printed: set[str] = set()

    def _add(self, kind: str, text: str) -> None:
        self.events.append((time.monotonic() - self.t0, kind, text))

    def stage(self, text: str, done: int | None = None, total: int | None = None) -> None:
        if text != self.last_stage:  # evaluator stages repeat with done/total; keep their first mark
            self._add("stage", text)
            self.last_stage = text
            if not self.in_loop and not text.endswith(")") and text not in self.printed:  # not every candidate's
                self.printed.add(text)
                print(f"  [{self.events[-1][0]:7.1f}s] {text}", flush=True)

    def start(self, *, total: int | None, done: int, timeout: float | None) -> None:
        self._add("start", f"trial loop (done {done}, budget {total}, timeout {timeout})")
        self.last_stage = ""
        self.in_loop = True
        print(f"  [{self.events[-1][0]:7.1f}s] trial loop", flush=True)

    def trial(self, *, number: int, done: int, front: int, outcome: Any) -> None:
        self._add("trial", str(number))

    def note(self, text: str) -> None:
        self._add("note", text)
        print(f"  note: {text}", flush=True)

    def end(self) -> None:
        self._add("end", "trial loop ended")
        self.last_stage = ""
        self.in_loop = False
        print(f"  [{self.events[-1][0]:7.1f}s] trial loop ended", flush=True)


def _kind(text: str, phase: str) -> str:
    if phase == "loop":
        return "trial loop"
    if text.startswith("reference"):
        return "reference"
    if phase == "after":
        return "report" if "report" in text else "export"
    if text.startswith("load"):
        return "load"
    if "profil" in text:
        return "profiling"
    return "other setup"


def split(events: list[tuple[float, str, str]], total: float) -> dict[str, float]:
    """Seconds per phase. A mark lasts until the next one; everything between the loop's start and end is the
    trial loop (the evaluator's per-trial stages inside it included); reference images (train and held-out)
    count as reference generation wherever they happen."""
    out = {"load": events[0][0] if events else total}
    phase = "before"
    marks = [e for e in events if e[1] in ("stage", "start", "end")]
    for i, (t, kind, text) in enumerate(marks):
        phase = "loop" if kind == "start" else "after" if kind == "end" else phase
        nxt = marks[i + 1][0] if i + 1 < len(marks) else total
        key = _kind(text, phase) if kind == "stage" else "trial loop" if kind == "start" else "export"
        out[key] = out.get(key, 0.0) + (nxt - t)
    return out


def bucket(phases: dict[str, float]) -> dict[str, float]:
    """Seconds per part of the run, keyed ``<part>_s``."""
    return {f"{k.replace(' ', '_')}_s": v for k, v in phases.items()}


def trial_stats(study: Any, loop_start_dt: Any) -> dict[str, Any]:
    """Durations of the trials this session ran (Optuna's start/complete datetimes)."""
    from optuna.trial import TrialState

    durs, evals, reasons = [], [], {}
    n_complete = n_fail = n_dup = 0
    for t in study.get_trials(deepcopy=False):
        if t.datetime_start is None or t.datetime_complete is None or t.datetime_start < loop_start_dt:
            continue
        durs.append((t.datetime_complete - t.datetime_start).total_seconds())
        n_complete += t.state == TrialState.COMPLETE
        n_fail += t.state == TrialState.FAIL
        n_dup += "duplicate_of" in t.user_attrs
        res = t.user_attrs.get("result")
        if isinstance(res, dict) and isinstance(res.get("seconds"), (int, float)):
            evals.append(float(res["seconds"]))
        if t.state == TrialState.FAIL:
            r = str(t.user_attrs.get("reason", "?"))[:80]
            reasons[r] = reasons.get(r, 0) + 1
    return {"trials": len(durs), "complete": n_complete, "failed": n_fail, "duplicates": n_dup,
            "candidates_s": sum(durs), "trial_median_s": statistics.median(durs) if durs else None,
            "evaluation_median_s": statistics.median(evals) if evals else None, "fail_reasons": reasons}


_FLAGS = {"num_steps": "steps"}  # RunSettings field -> its `cachesearch run` flag, where they differ


def explicit_options(args: argparse.Namespace) -> dict[str, Any]:
    """The run options this sample sets, by :class:`~cachesearch.search.RunSettings` field name."""
    return {"model": args.model, "device": args.device, "latency": args.latency, "timeout": args.timeout,
            "num_steps": args.steps, "scheduler": args.scheduler, "n_train": args.n_train,
            "n_heldout": args.n_heldout, "trials": args.trials}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="arch:sd15")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--latency", default="measured")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--scheduler", default=None)
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--n-heldout", type=int, default=None)
    ap.add_argument("--trials", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-export", action="store_true",
                    help="Skip exporting the front (held-out validation, report), like the CLI's --no-export.")
    ap.add_argument("--workdir", default=None, help="Where the run and reference cache go (default: a temp dir, "
                                                   "deleted afterwards).")
    ap.add_argument("--out", type=Path, default=Path("search_sample.json"))
    args = ap.parse_args()
    if args.threads or not args.device.startswith("cuda"):
        torch.set_num_threads(args.threads or 1)
    from cachesearch.search import resolve_settings, run_search

    work = Path(args.workdir or tempfile.mkdtemp(prefix="cachesearch-sample-"))
    explicit = explicit_options(args)
    cli = ["cachesearch", "run", "--name", "gpu-sample", "--out", str(work / "runs"), "--cache-dir",
           str(work / "cache")] + [f"--{_FLAGS.get(k, k).replace('_', '-')} {v}" for k, v in explicit.items()
                                   if v is not None] \
        + (["--no-export"] if args.no_export else [])
    # the temporary work folder is named by a placeholder: results never carry this machine's paths
    doc: dict[str, Any] = {"env": environment(args.device), "errors": [],
                           "equivalent_cli": " ".join(cli).replace(str(work), "<workdir>")}
    progress = TimedProgress()
    prepared: dict[str, Any] = {}
    summary = None
    try:
        settings = resolve_settings("gpu-sample", explicit, out=str(work / "runs"))
        doc["settings"] = {k: getattr(settings, k) for k in ("model", "num_steps", "scheduler", "n_train", "n_heldout",
                                                              "metric", "latency", "objective", "timeout", "device")}
        summary = run_search(settings, progress, cache_dir=str(work / "cache"), export=not args.no_export,
                             on_prepared=lambda p: prepared.__setitem__("prep", p))
    except BaseException as e:  # noqa: BLE001 - KeyboardInterrupt too: record what was done
        doc["errors"].append(f"{type(e).__name__}: {e}")
        print(f"  ERROR {doc['errors'][-1]}", file=sys.stderr, flush=True)
    total = time.monotonic() - progress.t0
    phases = split(progress.events, total)
    doc.update(total_s=total, phases_s=phases, split_s=bucket(phases),
               events=[{"t": round(t, 3), "kind": k, "text": x} for t, k, x in progress.events
                       if k in ("start", "end", "note") or (k == "stage" and not x.endswith(")"))])
    prep = prepared.get("prep")
    if prep is not None:
        ev = prep.evaluator
        doc["random_weights"] = bool(ev.random_weights)
        doc["metric"] = ev.metric_name
        starts = [t for t, k, _ in progress.events if k == "start"]
        import datetime as dt

        loop_start = dt.datetime.now() - dt.timedelta(seconds=total - starts[0]) if starts else dt.datetime.min
        ts = trial_stats(prep.study, loop_start - dt.timedelta(seconds=1))
        loop = doc["split_s"]["trial_loop_s"]
        ts["search_overhead_s"] = max(loop - ts["candidates_s"], 0.0)
        ts["trials_per_hour"] = ts["trials"] / loop * 3600 if loop > 0 else None
        ts["trials_per_hour_wall"] = ts["trials"] / total * 3600 if total > 0 else None
        doc["trials"] = ts
    if summary is not None:
        doc["summary"] = {"trials_total": summary.trials_total, "this_session": summary.trials_this_session,
                          "completed": summary.completed, "failed": summary.failed, "front": len(summary.front),
                          "stopped": summary.stopped, "seconds": summary.seconds}
    if doc.get("random_weights"):
        doc["note"] = "random weights: latency is real, quality numbers are meaningless"
    write_json(args.out, doc)
    t = doc.get("trials", {})
    print(f"search sample: {total:.0f} s total, split {({k: round(v, 1) for k, v in doc['split_s'].items()})}, "
          f"{t.get('trials')} trials ({t.get('trials_per_hour') or 0:.0f}/h in the loop), "
          f"candidates {t.get('candidates_s', 0):.1f} s, search overhead {t.get('search_overhead_s', 0):.1f} s")
    print(f"wrote {args.out}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if doc["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
