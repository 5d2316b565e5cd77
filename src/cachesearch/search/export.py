"""Export the Pareto front: every Pareto-optimal trial becomes a validated ``cachesearch/schedule`` file.

Each front trial is replayed from its parameters (``FixedTrial`` semantics: the space's pure trial → policy
map), compiled, checked against the mask recorded in the trial, evaluated on the held-out prompts, and only
then written (atomically) with train and held-out metrics and provenance. ``index.yaml`` lists the files.
Held-out results are cached in ``heldout.json`` (keyed by compiled mask and evaluation identity), so a re-export
does not recompute them. Files of trials no longer on the front are removed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .._compile import default_name
from .._util import atomic_write, utc_now
from .._version import __version__
from ..schedule import LossStats, Policy, Provenance, Schedule, TailMetrics, save_schedule
from ..schedule._yaml import read_yaml_file
from ..schedule._yaml_metrics import parse_stats, stats_dict
from .family_table import FamilyBest, family_table
from .objective import mask_key, result_attr
from .study import ATTR_BASELINE, ATTR_BASELINE_KIND, ATTR_BASELINES, is_full_compute, pareto_trials

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from ..evaluate import EvalResult
    from .executors.base import Prepared, Progress

__all__ = [
    "BaselineRow",
    "ExportEntry",
    "ExportResult",
    "HeldoutCache",
    "QualityPair",
    "baseline_kind",
    "baseline_rows",
    "export_front",
    "heldout_result",
    "load_export",
    "train_result",
]

INDEX_FORMAT = "cachesearch/index@1"


@dataclass(frozen=True)
class QualityPair:
    """A quality-loss value on the train and the held-out prompts (``metric``: which distance)."""

    train: float | None
    heldout: float | None
    metric: str | None = None


@dataclass(frozen=True)
class ExportEntry:
    """One exported schedule file of the front (a row of ``index.yaml``'s ``schedules``).

    ``objective`` is the study's second objective (cost ratio, or latency ratio under ``--objective latency``);
    ``baseline``/``baseline_kind`` name the baseline the trial was, if it was one; ``speedup`` is measured
    (``--latency measured``) or None: the analytic figure is ``cost_ratio`` (indexes written before this said
    ``1 / cost_ratio`` there). ``kind``: ``static`` (masks) or ``runtime`` (a library's own cache: its cost was
    counted per image, ``cost_heldout`` on the held-out images).
    """

    file: str
    name: str
    trial: int
    baseline: str | None
    baseline_kind: str | None
    policy: dict[str, Any]
    quality: QualityPair
    objective: float
    cost_ratio: float | None
    speedup: float | None
    latency_ms: float | None
    accuracy: QualityPair
    tail: TailMetrics | None = None
    kind: str = "static"
    cost_heldout: float | None = None

    def stats(self, split: str) -> LossStats | None:
        """The per-image loss distribution on ``split`` (``None`` without one)."""
        return None if self.tail is None else getattr(self.tail, split)

    def to_dict(self) -> dict[str, Any]:
        """The ``index.yaml`` form."""
        d = asdict(self)
        d["accuracy"].pop("metric")
        d["quality"] = {"metric": self.quality.metric, "train": self.quality.train, "heldout": self.quality.heldout}
        d.pop("tail")
        if self.tail is not None:
            d["tail"] = {k: stats_dict(v) for k in ("train", "heldout") if (v := getattr(self.tail, k)) is not None}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExportEntry:
        """Inverse of :meth:`to_dict` (also reads indexes written before ``objective``/``baseline_kind``/``tail``)."""
        q, acc = d["quality"], d.get("accuracy") or {}
        objective = d.get("objective", d.get("cost_ratio"))
        tail = d.get("tail")
        return cls(
            file=d["file"], name=d["name"], trial=d["trial"], baseline=d.get("baseline"),
            baseline_kind=d.get("baseline_kind"), policy=dict(d.get("policy") or {}),
            quality=QualityPair(train=q.get("train"), heldout=q.get("heldout"), metric=q.get("metric")),
            objective=math.inf if objective is None else float(objective), cost_ratio=d.get("cost_ratio"),
            speedup=d.get("speedup"), latency_ms=d.get("latency_ms"),
            accuracy=QualityPair(train=acc.get("train"), heldout=acc.get("heldout")),
            tail=None if not tail else TailMetrics(train=parse_stats("tail.train", tail.get("train")),
                                                   heldout=parse_stats("tail.heldout", tail.get("heldout"))),
            kind=d.get("kind", "static"), cost_heldout=d.get("cost_heldout"),
        )


@dataclass(frozen=True)
class BaselineRow:
    """An evaluated baseline trial: its kind (the family that proposed it), its policy, train quality and
    objective (``cost``), and once validated its held-out quality (a row of ``index.yaml``'s
    ``baselines.validated``). ``best_branch``: the best-branch DeepCache baseline of its interval."""

    name: str
    kind: str | None
    trial: int
    state: str
    policy: dict[str, Any] = field(default_factory=dict)
    quality: float | None = None
    cost: float | None = None
    speedup: float | None = None
    mask_key: str | None = None
    reason: str | None = None
    heldout: float | None = None
    best_branch: bool = False
    heldout_stats: LossStats | None = None

    @property
    def done(self) -> bool:
        """Whether it completed (has train quality and cost)."""
        return self.quality is not None and self.cost is not None

    def to_dict(self) -> dict[str, Any]:
        """The ``index.yaml`` form (unset optional fields left out)."""
        d = asdict(self)
        d["heldout_stats"] = None if self.heldout_stats is None else stats_dict(self.heldout_stats)
        return {k: v for k, v in d.items() if k in ("name", "kind", "trial", "state", "heldout")
                or (v is not None and v is not False)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BaselineRow:
        names = {f.name for f in fields(cls)}
        row = {k: v for k, v in d.items() if k in names}
        row["heldout_stats"] = parse_stats("heldout_stats", d.get("heldout_stats"))
        return cls(**row)


@dataclass
class ExportResult:
    """What an export wrote."""

    schedules_dir: Path
    index_path: Path
    entries: list[ExportEntry]
    front_trials: list[FrozenTrial]
    baselines: list[BaselineRow] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    metric: str | None = None
    families: list[FamilyBest] = field(default_factory=list)
    """The best schedule of each family at a few budgets (:mod:`.family_table`)."""


def train_result(trial: FrozenTrial) -> EvalResult:
    """The train :class:`~cachesearch.evaluate.EvalResult` recorded on a trial."""
    stored = trial.user_attrs.get("result")
    if not isinstance(stored, dict):
        raise ValueError(f"trial {trial.number} has no recorded evaluation result")
    return _result_from_dict(stored)


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
        atomic_write(self.path, json.dumps(doc, indent=1, default=str) + "\n")


def _result_from_dict(d: dict[str, Any]) -> EvalResult:
    from ..evaluate import EvalResult  # loads the evaluator module

    names = {f.name for f in fields(EvalResult)}
    return EvalResult(**{k: v for k, v in d.items() if k in names})


def heldout_result(prep: Prepared, schedule: Schedule, cache: HeldoutCache) -> EvalResult:
    """The held-out :class:`EvalResult` of ``schedule`` (from the cache, else evaluated now and cached)."""
    key = mask_key(schedule)
    hit = cache.get(key)
    if hit is not None:
        return _result_from_dict(hit)
    res = prep.ev.evaluate(schedule, split="heldout", measure=prep.settings.latency == "measured")
    cache.put(key, result_attr(res))
    return res


def _replay(prep: Prepared, trial: FrozenTrial, name: str) -> tuple[Policy, Schedule]:
    """Rebuild a trial's schedule from its parameters and check it equals the mask recorded during search."""
    from optuna.trial import FixedTrial

    policy = prep.space.suggest(FixedTrial(dict(trial.params), number=trial.number))
    schedule = prep.ev.compile(policy, name=name)
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


def baseline_kind(attrs: Mapping[str, Any]) -> str | None:
    """The kind of a baseline trial from its attributes: ``baseline_kind``, or for trials recorded before it
    existed the kind of its policy (the family of every built-in baseline)."""
    kind = attrs.get(ATTR_BASELINE_KIND)
    if kind is None and isinstance(attrs.get("policy"), Mapping):
        kind = attrs["policy"].get("kind")
    return kind


def baseline_rows(study: optuna.Study) -> list[BaselineRow]:
    """One row per evaluated baseline trial (sorted by cost, unfinished ones last)."""
    from optuna.trial import TrialState

    rows = []
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    for t in trials:
        name = t.user_attrs.get(ATTR_BASELINE)
        if name is None or t.user_attrs.get("requeued"):
            continue
        common = {"name": name, "kind": baseline_kind(t.user_attrs), "trial": t.number,
                  "state": t.state.name.lower(), "policy": dict(t.user_attrs.get("policy") or {})}
        scored = t
        if t.state == TrialState.PRUNED and "duplicate_of" in t.user_attrs:  # its mask's values are on that trial
            scored = by_number.get(t.user_attrs["duplicate_of"], t)
            common["state"] = "complete" if scored.state == TrialState.COMPLETE else common["state"]
        if scored.state == TrialState.COMPLETE and scored.values is not None:
            rows.append(BaselineRow(**common, quality=scored.values[0], cost=scored.values[1],
                                    speedup=_measured_speedup(t), mask_key=t.user_attrs.get("mask_key")))
        else:
            rows.append(BaselineRow(**common, reason=t.user_attrs.get("reason")))
    return sorted(rows, key=lambda r: (math.inf if r.cost is None else r.cost, r.name))


def _measured_speedup(trial: FrozenTrial) -> float | None:
    """The speedup measured on a trial's train images (``--latency measured``), else None: 1/cost is not one."""
    result = trial.user_attrs.get("result")
    return result.get("speedup") if isinstance(result, Mapping) else None


def _dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[0] and a[1] <= b[1] and a != b


REFERENCE_INTERVAL = 3
"""DeepCache interval whose every branch the report compares against (N=3, the paper's usual setting)."""


def is_reference_deepcache(row: BaselineRow) -> bool:
    """A DeepCache baseline at :data:`REFERENCE_INTERVAL`."""
    return row.kind == "deepcache" and row.policy.get("interval") == REFERENCE_INTERVAL


def baselines_to_validate(rows: list[BaselineRow]) -> list[BaselineRow]:
    """Baselines whose held-out quality the report needs: the baselines' own Pareto front, every fewer-steps
    baseline, every branch of DeepCache N=3, and for each DeepCache interval its best branch (lowest train
    quality loss)."""
    done = [r for r in rows if r.done]
    chosen: dict[str, BaselineRow] = {}
    for r in done:
        pt = (r.quality, r.cost)
        if not any(_dominates((o.quality, o.cost), pt) for o in done):  # type: ignore[arg-type]
            chosen[r.name] = r
        if r.kind == "steps" or is_reference_deepcache(r):
            chosen[r.name] = r
    best: dict[Any, BaselineRow] = {}
    for r in done:
        if r.kind == "deepcache":
            interval = r.policy.get("interval")
            if interval not in best or r.quality < best[interval].quality:  # type: ignore[operator]
                best[interval] = r
    for r in best.values():
        chosen[r.name] = replace(r, best_branch=True)
    return sorted(chosen.values(), key=lambda r: r.cost)  # type: ignore[arg-type, return-value]


def export_front(prep: Prepared, progress: Progress | None = None) -> ExportResult:
    """Write every Pareto-optimal trial of the run as a schedule file with train and held-out metrics.

    Trials that run full compute (cost ratio >= 1: the reference itself) are not schedules worth shipping and
    are listed as rejected, as are trials whose held-out evaluation fails.
    """
    settings, study, ev = prep.settings, prep.study, prep.ev
    run_dir: Path = prep.run_dir
    schedules_dir = run_dir / "schedules"
    schedules_dir.mkdir(parents=True, exist_ok=True)
    identity = {"fingerprint": ev.fingerprint, "metric": ev.metric_name, "losses": "per-image",
                "heldout": ev.prompt_set("heldout").digest(), "sampler": ev.describe().get("sampler")}
    cache = HeldoutCache(run_dir / "heldout.json", identity)
    front = pareto_trials(study)
    entries: list[ExportEntry] = []
    rejected: list[dict[str, Any]] = []
    written: set[str] = set()
    stage = progress.stage if progress is not None else (lambda *a, **k: None)
    for i, t in enumerate(front):
        stage("held-out validation of the front", i, len(front))
        base = {"trial": t.number, "baseline": t.user_attrs.get(ATTR_BASELINE),
                "train": {"quality": t.values[0], "cost": t.values[1]}}
        if is_full_compute(t):
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
        metrics = ev.to_schedule_metrics(train, heldout, threshold=settings.tail_threshold)
        provenance = Provenance(cachesearch=__version__, created=utc_now(), study=settings.name, trial=t.number,
                                prompts=train.prompts, git=t.user_attrs.get("git"))
        schedule = schedule.with_updates(metrics=metrics, provenance=provenance)
        path = save_schedule(schedule, schedules_dir / f"{stem}.yaml")
        _readable(path)
        written.add(path.name)
        is_baseline = ATTR_BASELINE in t.user_attrs
        entries.append(ExportEntry(
            file=path.name, name=schedule.name, trial=t.number, baseline=t.user_attrs.get(ATTR_BASELINE),
            baseline_kind=baseline_kind(t.user_attrs) if is_baseline else None, policy=dict(schedule.policy),
            quality=QualityPair(metric=train.metric, train=train.quality, heldout=heldout.quality),
            objective=t.values[1], cost_ratio=train.cost_ratio, speedup=train.speedup,
            latency_ms=train.latency_ms, accuracy=QualityPair(train=train.accuracy, heldout=heldout.accuracy),
            tail=metrics.tail,
            kind=schedule.kind, cost_heldout=heldout.cost_ratio if schedule.kind == "runtime" else None,
        ))
    stage("held-out validation of the front", len(front), len(front))

    # Baselines the report compares against, validated the same way.
    rows = baseline_rows(study)
    validated: list[BaselineRow] = []
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    todo = baselines_to_validate(rows)
    for i, r in enumerate(todo):
        stage("held-out validation of baselines", i, len(todo))
        t = by_number[r.trial]
        try:
            _, schedule = _replay(prep, t, name=f"{settings.name}-{r.name}")
            res = heldout_result(prep, schedule, cache)
        except Exception as e:  # noqa: BLE001
            validated.append(replace(r, heldout=None, reason=f"{type(e).__name__}: {e}"))
            continue
        validated.append(replace(r, heldout=res.quality, heldout_stats=res.summary(
            threshold=settings.tail_threshold, interval=True)) if res.valid else replace(r, heldout=None,
                                                                                          reason=res.reason))
    stage("held-out validation of baselines", len(todo), len(todo))

    def validate(t: FrozenTrial) -> EvalResult | str:
        try:
            _, schedule = _replay(prep, t, name=f"{settings.name}-t{t.number}")
            return heldout_result(prep, schedule, cache)
        except Exception as e:  # noqa: BLE001 - a row of the table says why
            return f"{type(e).__name__}: {e}"

    stage("held-out validation of each family's best", 0, 1)
    families = family_table(study.get_trials(deepcopy=False), prep.space.space.families, validate)
    stage("held-out validation of each family's best", 1, 1)

    for stale in schedules_dir.glob("*.yaml"):
        if stale.name not in written and stale.name != "index.yaml":
            stale.unlink()
    index = {
        "format": INDEX_FORMAT,
        "study": settings.name,
        "created": utc_now(),
        "cachesearch": __version__,
        "model": {"source": ev.source, "fingerprint": ev.fingerprint, "weights": ev.weights_id()},
        "sampler": ev.describe().get("sampler"),
        "metric": ev.metric_name,
        "tail_threshold": settings.tail_threshold,
        "objectives": list(prep.objectives.names),
        "constraints": {"max_quality": prep.objectives.max_quality, "min_speedup": prep.objectives.min_speedup},
        "prompts": {"train": ev.prompt_set("train").digest(), "heldout": ev.prompt_set("heldout").digest()},
        "schedules": [e.to_dict() for e in entries],
        "rejected": rejected,
        "baselines": {"enqueued": len(rows), "skipped": study.user_attrs.get(ATTR_BASELINES, {}).get("skipped", {}),
                      "validated": [r.to_dict() for r in validated]},
        "families": [r.to_dict() for r in families],
    }
    index_path = schedules_dir / "index.yaml"
    atomic_write(index_path, yaml.safe_dump(index, sort_keys=False, width=120))
    kept = {e.trial for e in entries}
    return ExportResult(schedules_dir=schedules_dir, index_path=index_path, entries=entries,
                        front_trials=[t for t in front if t.number in kept], baselines=validated, rejected=rejected,
                        metric=ev.metric_name, families=families)


def load_export(run_dir: Path) -> ExportResult:
    """The last export of a run, read back from ``schedules/index.yaml`` (raises FileNotFoundError if none)."""
    index_path = Path(run_dir) / "schedules" / "index.yaml"
    if not index_path.is_file():
        raise FileNotFoundError(f"{index_path}: the run has not been exported; run `cachesearch export --name "
                                f"{Path(run_dir).name}` first")
    doc = read_yaml_file(index_path, what="front index", max_bytes=16 << 20)
    if not isinstance(doc, dict) or doc.get("format") != INDEX_FORMAT:
        raise ValueError(f"{index_path}: format: expected {INDEX_FORMAT!r}")
    return ExportResult(schedules_dir=index_path.parent, index_path=index_path,
                        entries=[ExportEntry.from_dict(e) for e in doc["schedules"]], front_trials=[],
                        baselines=[BaselineRow.from_dict(r) for r in doc.get("baselines", {}).get("validated", [])],
                        rejected=list(doc.get("rejected", [])), metric=doc.get("metric"),
                        families=[FamilyBest.from_dict(r) for r in doc.get("families", [])])
