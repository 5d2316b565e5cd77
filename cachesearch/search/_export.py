"""Export the Pareto front: every Pareto-optimal trial becomes a validated ``cachesearch/schedule@1`` file.

Each front trial is replayed from its parameters (``FixedTrial`` semantics: the space's pure trial → policy
map), compiled, checked against the mask recorded in the trial, evaluated on the held-out prompts, and only
then written (atomically) with train and held-out metrics and provenance. ``index.yaml`` lists the files.
Held-out results are cached in ``heldout.json`` (keyed by compiled mask and evaluation identity), so a re-export
does not recompute them. Files of trials no longer on the front are removed.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .._compile import default_name
from .._version import __version__
from ..schedule import Provenance, Schedule, save_schedule
from ._objective import mask_key
from ._study import ATTR_BASELINES, pareto_trials, write_text_atomic

__all__ = [
    "ExportResult",
    "HeldoutCache",
    "baseline_rows",
    "export_front",
    "heldout_result",
    "load_export",
    "train_result",
]

INDEX_FORMAT = "cachesearch/index@1"


@dataclass
class ExportResult:
    """What an export wrote."""

    schedules_dir: Path
    index_path: Path
    entries: list[dict[str, Any]]
    front_trials: list[Any]
    baselines: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    metric: str | None = None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def train_result(trial: Any) -> Any:
    """The train :class:`~cachesearch.evaluate.EvalResult` recorded on a trial."""
    from ..evaluate import EvalResult

    stored = trial.user_attrs.get("result")
    if not isinstance(stored, dict):
        raise ValueError(f"trial {trial.number} has no recorded evaluation result")
    names = {f.name for f in fields(EvalResult)}
    return EvalResult(**{k: v for k, v in stored.items() if k in names})


class HeldoutCache:
    """Held-out results by compiled mask, in ``<run>/heldout.json`` (rewritten atomically after each add)."""

    def __init__(self, path: Path, identity: dict[str, Any]) -> None:
        self.path = path
        self.identity = identity
        self.digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.entries: dict[str, dict[str, Any]] = {}
        if path.is_file():
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                if doc.get("identity") == self.digest:
                    self.entries = dict(doc.get("results", {}))
            except (OSError, ValueError):
                self.entries = {}

    def get(self, key: str) -> dict[str, Any] | None:
        """A cached result dict, or None."""
        return self.entries.get(key)

    def put(self, key: str, result: dict[str, Any]) -> None:
        """Store and persist a result dict."""
        self.entries[key] = result
        doc = {"identity": self.digest, "results": self.entries}
        write_text_atomic(self.path, json.dumps(doc, indent=1, default=str) + "\n")


def _result_from_dict(d: dict[str, Any]) -> Any:
    from ..evaluate import EvalResult

    names = {f.name for f in fields(EvalResult)}
    return EvalResult(**{k: v for k, v in d.items() if k in names})


def heldout_result(prep: Any, schedule: Schedule, cache: HeldoutCache) -> Any:
    """The held-out :class:`EvalResult` of ``schedule`` (from the cache, else evaluated now and cached)."""
    from ._objective import result_attr

    key = mask_key(schedule)
    hit = cache.get(key)
    if hit is not None:
        return _result_from_dict(hit)
    res = prep.evaluator.evaluate(schedule, split="heldout", measure=prep.settings.latency == "measured")
    cache.put(key, result_attr(res))
    return res


def _replay(prep: Any, trial: Any, name: str) -> tuple[Any, Schedule]:
    """Rebuild a trial's schedule from its parameters and check it equals the mask recorded during search."""
    from optuna.trial import FixedTrial

    policy = prep.space.suggest(FixedTrial(dict(trial.params), number=trial.number))
    schedule = prep.evaluator.compile(policy, name=name)
    recorded = trial.user_attrs.get("mask_key")
    if recorded is not None and mask_key(schedule) != recorded:
        raise ValueError(
            f"trial {trial.number}: replaying its parameters compiles a different mask than the one evaluated "
            f"(space or model changed since the search?)"
        )
    return policy, schedule


def _readable(path: Path) -> None:
    """``save_schedule`` writes through a private temp file (mode 0600); exported files are for sharing."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _file_stem(schedule_policy_name: str, number: int) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in schedule_policy_name)
    return f"t{number:04d}-{safe}"


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def baseline_rows(study: Any) -> list[dict[str, Any]]:
    """One row per evaluated baseline trial: name, trial, train quality, cost, speedup (sorted by cost)."""
    from optuna.trial import TrialState

    rows = []
    for t in study.get_trials(deepcopy=False):
        name = t.user_attrs.get("baseline")
        if name is None or t.user_attrs.get("requeued"):
            continue
        row: dict[str, Any] = {"name": name, "trial": t.number, "state": t.state.name.lower()}
        if t.state == TrialState.COMPLETE and t.values is not None:
            row.update(quality=t.values[0], cost=t.values[1], speedup=t.user_attrs.get("speedup"),
                       mask_key=t.user_attrs.get("mask_key"))
        else:
            row["reason"] = t.user_attrs.get("reason")
        rows.append(row)
    return sorted(rows, key=lambda r: (r.get("cost", math.inf), r["name"]))


def _dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[0] and a[1] <= b[1] and a != b


REFERENCE_INTERVAL = 3
"""DeepCache interval whose every branch the report compares against (N=3, the paper's usual setting)."""


def baselines_to_validate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Baselines whose held-out quality the report needs: the baselines' own Pareto front, every fewer-steps
    baseline, every branch of DeepCache N=3, and for each DeepCache interval its best branch (lowest train
    quality loss)."""
    done = [r for r in rows if "quality" in r]
    chosen: dict[str, dict[str, Any]] = {}
    for r in done:
        pt = (r["quality"], r["cost"])
        if not any(_dominates((o["quality"], o["cost"]), pt) for o in done):
            chosen[r["name"]] = r
        if r["name"].startswith(("steps-", f"deepcache-n{REFERENCE_INTERVAL}-")):
            chosen[r["name"]] = r
    best: dict[str, dict[str, Any]] = {}
    for r in done:
        if r["name"].startswith("deepcache-n"):
            interval = r["name"].split("-")[1]
            if interval not in best or r["quality"] < best[interval]["quality"]:
                best[interval] = r
    for r in best.values():
        chosen[r["name"]] = {**r, "best_branch": True}
    return sorted(chosen.values(), key=lambda r: r["cost"])


def export_front(prep: Any, progress: Any = None) -> ExportResult:
    """Write every Pareto-optimal trial of the run as a schedule file with train and held-out metrics.

    Trials that run full compute (cost ratio >= 1: the reference itself) are not schedules worth shipping and
    are listed as rejected, as are trials whose held-out evaluation fails.
    """
    settings, study, ev = prep.settings, prep.study, prep.evaluator
    run_dir: Path = prep.run_dir
    schedules_dir = run_dir / "schedules"
    schedules_dir.mkdir(parents=True, exist_ok=True)
    identity = {"fingerprint": ev.fingerprint, "metric": ev.metric_name,
                "heldout": ev.prompt_set("heldout").digest(), "sampler": ev.describe().get("sampler")}
    cache = HeldoutCache(run_dir / "heldout.json", identity)
    front = pareto_trials(study)
    entries: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    written: set[str] = set()
    stage = getattr(progress, "stage", lambda *a, **k: None)
    for i, t in enumerate(front):
        stage("held-out validation of the front", i, len(front))
        base = {"trial": t.number, "baseline": t.user_attrs.get("baseline"),
                "train": {"quality": t.values[0], "cost": t.values[1]}}
        if t.values[1] >= 1.0 - 1e-9:
            rejected.append({**base, "reason": "full compute (the reference itself): no speedup"})
            continue
        try:
            policy, schedule = _replay(prep, t, name=f"{settings.name}-t{t.number}")
        except Exception as e:  # noqa: BLE001 - report and keep exporting the others
            rejected.append({**base, "reason": f"replay failed: {type(e).__name__}: {e}"})
            continue
        stem = _file_stem(default_name(policy, schedule.num_steps), t.number)
        schedule = schedule.with_updates(name=f"{settings.name}-{stem}")
        heldout = heldout_result(prep, schedule, cache)
        if not heldout.valid or not _finite(heldout.quality):
            rejected.append({**base, "reason": f"held-out evaluation failed: {heldout.reason}"})
            continue
        train = train_result(t)
        metrics = ev.to_schedule_metrics(train, heldout)
        provenance = Provenance(cachesearch=__version__, created=_now(), study=settings.name, trial=t.number,
                                prompts=train.prompts, git=t.user_attrs.get("git"))
        schedule = schedule.with_updates(metrics=metrics, provenance=provenance)
        path = save_schedule(schedule, schedules_dir / f"{stem}.yaml")
        _readable(path)
        written.add(path.name)
        entries.append({
            "file": path.name, "name": schedule.name, "trial": t.number, "baseline": t.user_attrs.get("baseline"),
            "policy": dict(schedule.policy),
            "quality": {"metric": train.metric, "train": train.quality, "heldout": heldout.quality},
            "objective": t.values[1], "cost_ratio": train.cost_ratio, "speedup": t.user_attrs.get("speedup"),
            "latency_ms": train.latency_ms, "accuracy": {"train": train.accuracy, "heldout": heldout.accuracy},
        })
    stage("held-out validation of the front", len(front), len(front))

    # Baselines the report compares against, validated the same way.
    rows = baseline_rows(study)
    validated = []
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    todo = baselines_to_validate(rows)
    for i, r in enumerate(todo):
        stage("held-out validation of baselines", i, len(todo))
        t = by_number[r["trial"]]
        try:
            _, schedule = _replay(prep, t, name=f"{settings.name}-{r['name']}")
            res = heldout_result(prep, schedule, cache)
        except Exception as e:  # noqa: BLE001
            validated.append({**r, "heldout": None, "reason": f"{type(e).__name__}: {e}"})
            continue
        validated.append({**r, "heldout": res.quality if res.valid else None,
                          **({} if res.valid else {"reason": res.reason})})
    stage("held-out validation of baselines", len(todo), len(todo))

    for stale in schedules_dir.glob("*.yaml"):
        if stale.name not in written and stale.name != "index.yaml":
            stale.unlink()
    index = {
        "format": INDEX_FORMAT,
        "study": settings.name,
        "created": _now(),
        "cachesearch": __version__,
        "model": {"source": ev.source, "fingerprint": ev.fingerprint, "weights": ev.weights_id()},
        "sampler": ev.describe().get("sampler"),
        "metric": ev.metric_name,
        "objectives": list(prep.objectives.names),
        "constraints": {"max_quality": prep.objectives.max_quality, "min_speedup": prep.objectives.min_speedup},
        "prompts": {"train": ev.prompt_set("train").digest(), "heldout": ev.prompt_set("heldout").digest()},
        "schedules": entries,
        "rejected": rejected,
        "baselines": {"enqueued": len(rows), "skipped": study.user_attrs.get(ATTR_BASELINES, {}).get("skipped", {}),
                      "validated": validated},
    }
    index_path = schedules_dir / "index.yaml"
    write_text_atomic(index_path, yaml.safe_dump(index, sort_keys=False, width=120))
    kept = {e["trial"] for e in entries}
    return ExportResult(schedules_dir=schedules_dir, index_path=index_path, entries=entries,
                        front_trials=[t for t in front if t.number in kept], baselines=validated, rejected=rejected,
                        metric=ev.metric_name)


def load_export(run_dir: Path) -> ExportResult:
    """The last export of a run, read back from ``schedules/index.yaml`` (raises FileNotFoundError if none)."""
    index_path = Path(run_dir) / "schedules" / "index.yaml"
    if not index_path.is_file():
        raise FileNotFoundError(f"{index_path}: the run has not been exported; run `cachesearch export --name "
                                f"{Path(run_dir).name}` first")
    doc = yaml.safe_load(index_path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or doc.get("format") != INDEX_FORMAT:
        raise ValueError(f"{index_path}: format: expected {INDEX_FORMAT!r}")
    return ExportResult(schedules_dir=index_path.parent, index_path=index_path, entries=list(doc["schedules"]),
                        front_trials=[], baselines=list(doc.get("baselines", {}).get("validated", [])),
                        rejected=list(doc.get("rejected", [])), metric=doc.get("metric"))
