"""Export the Pareto front: every Pareto-optimal trial becomes a validated ``cachesearch/schedule`` file.

Each front trial is replayed from its parameters (``FixedTrial`` semantics: the space's pure trial → policy
map), compiled, checked against the mask recorded in the trial, evaluated on the held-out prompts, and only
then written (atomically) with train and held-out metrics (and the per-image loss distributions) and provenance.
Held-out pairs are added where a ranking the export states (a schedule against its neighbour on the front, or
against a baseline it claims to beat) cannot be told from chance (:mod:`.validation`). ``index.yaml`` lists the
files (:mod:`.index`). Held-out results are cached in ``heldout.json`` (keyed by compiled mask and evaluation
identity), so a re-export does not recompute them. Files of trials no longer on the front are removed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .._compile import default_name
from .._util import atomic_write, is_num, utc_now
from .._version import __version__
from ..schedule import Policy, Provenance, Schedule, save_schedule
from .attrs import ATTR_BASELINE, ATTR_BASELINE_KIND, ATTR_BASELINES
from .family_table import family_table
from .index import INDEX_FORMAT, BaselineRow, ExportEntry, ExportResult, QualityPair, load_export
from .masks import mask_key
from .trials import dominates, is_full_compute, pareto_trials
from .validation import (
    Claim,
    HeldoutCache,
    HeldoutScores,
    Runner,
    grow_until_ranked,
    pair_sizes,
    result_from_dict,
)

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
    "load_export",
    "train_result",
]


def train_result(trial: FrozenTrial) -> EvalResult:
    """The train :class:`~cachesearch.evaluate.EvalResult` recorded on a trial."""
    stored = trial.user_attrs.get("result")
    if not isinstance(stored, dict):
        raise ValueError(f"trial {trial.number} has no recorded evaluation result")
    return result_from_dict(stored)


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
        if not any(dominates((o.quality, o.cost), pt) for o in done):  # type: ignore[arg-type]
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


def _claims(entries: list[tuple[ExportEntry, str]], baselines: list[tuple[BaselineRow, str]],
            scores: HeldoutScores) -> list[Claim]:
    """The rankings the export states, on the current held-out means (see :mod:`.validation`)."""
    def mean(key: str) -> float:
        res = scores.results[key]
        return res.quality if res.valid and res.quality is not None else math.inf

    out = []
    front = sorted(entries, key=lambda ek: ek[0].objective)
    for (cheap, ck), (dear, dk) in zip(front, front[1:]):
        if ck != dk:
            out.append(Claim(kind="neighbour", better=dk, worse=ck, label=f"{dear.file} vs {cheap.file}"))
    for row, bk in baselines:
        if row.cost is None or not (row.kind == "steps" or is_reference_deepcache(row) or row.best_branch):
            continue
        cheaper = [(e, k) for e, k in entries if e.objective <= row.cost + 1e-12]
        if not cheaper:
            continue
        best, key = min(cheaper, key=lambda ek: mean(ek[1]))
        if key != bk and mean(key) < mean(bk):
            out.append(Claim(kind="baseline", better=key, worse=bk, label=f"{best.file} vs {row.name}"))
    return out


def export_front(prep: Prepared, progress: Progress | None = None, *, runner: Runner | None = None) -> ExportResult:
    """Write every Pareto-optimal trial of the run as a schedule file with train and held-out metrics.

    Trials that run full compute (cost ratio >= 1: the reference itself) are not schedules worth shipping and
    are listed as rejected, as are trials whose held-out evaluation fails. Every exported schedule and compared
    baseline is scored on the first ``--n-heldout`` held-out pairs, and pairs are added (up to
    ``--n-heldout-max``) where the export's rankings are not yet resolved (:func:`.validation.grow_until_ranked`).
    ``runner`` scores batches of held-out ranges (e.g. on worker processes); default: in this process.
    """
    settings, study, ev = prep.settings, prep.study, prep.ev
    run_dir: Path = prep.run_dir
    schedules_dir = run_dir / "schedules"
    schedules_dir.mkdir(parents=True, exist_ok=True)
    identity = {"fingerprint": ev.fingerprint, "metric": ev.metric_name, "losses": "per-image",
                "heldout": ev.prompt_set("heldout").digest(), "sampler": ev.describe().get("sampler")}
    scores = HeldoutScores(ev, HeldoutCache(run_dir / "heldout.json", identity),
                           measure=settings.latency == "measured", runner=runner)
    sizes = pair_sizes(min(settings.n_heldout, scores.total), min(settings.heldout_max, scores.total))
    front = pareto_trials(study)
    rejected: list[dict[str, Any]] = []
    stage = progress.stage if progress is not None else (lambda *a, **k: None)
    items: list[tuple[FrozenTrial, Policy, Schedule, str]] = []
    replayed = []
    for t in front:
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
        replayed.append((t, policy, schedule.with_updates(name=f"{settings.name}-{stem}"), stem, base))

    # Baselines the report compares against, validated the same way.
    rows = baseline_rows(study)
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    todo = baselines_to_validate(rows)
    checked: list[tuple[BaselineRow, Schedule | None, str | None]] = []  # (row, schedule, why not)
    for r in todo:
        try:
            checked.append((r, _replay(prep, by_number[r.trial], name=f"{settings.name}-{r.name}")[1], None))
        except Exception as e:  # noqa: BLE001
            checked.append((r, None, f"{type(e).__name__}: {e}"))
    stage(f"held-out validation of {len(replayed)} front schedules and {len(todo)} baselines", 0, 1)
    scores.score_many([(s, sizes[0]) for _, _, s, _, _ in replayed] + [(s, sizes[0]) for _, s, _ in checked if s])
    stage(f"held-out validation of {len(replayed)} front schedules and {len(todo)} baselines", 1, 1)
    for t, policy, schedule, stem, base in replayed:
        heldout = scores.results[mask_key(schedule)]
        if not heldout.valid or not is_num(heldout.quality):
            rejected.append({**base, "reason": f"held-out evaluation failed: {heldout.reason}"})
        else:
            items.append((t, policy, schedule, stem))
    checked = [(r, s, why if why or s is None or scores.results[mask_key(s)].valid else
                scores.results[mask_key(s)].reason) for r, s, why in checked]
    keys = [(r, mask_key(s) if s is not None else None, why) for r, s, why in checked]

    def entry(t: FrozenTrial, schedule: Schedule, stem: str) -> ExportEntry:
        train, heldout = train_result(t), scores.results[mask_key(schedule)]
        is_baseline = ATTR_BASELINE in t.user_attrs
        return ExportEntry(
            file=f"{stem}.yaml", name=schedule.name, trial=t.number, baseline=t.user_attrs.get(ATTR_BASELINE),
            baseline_kind=baseline_kind(t.user_attrs) if is_baseline else None, policy=dict(schedule.policy),
            quality=QualityPair(metric=train.metric, train=train.quality, heldout=heldout.quality),
            objective=t.values[1], cost_ratio=train.cost_ratio, speedup=train.speedup,
            latency_ms=train.latency_ms, accuracy=QualityPair(train=train.accuracy, heldout=heldout.accuracy),
            tail=ev.to_schedule_metrics(train, heldout, threshold=settings.tail_threshold).tail,
            kind=schedule.kind, cost_heldout=heldout.cost_ratio if schedule.kind == "runtime" else None,
        )

    def validated() -> list[tuple[BaselineRow, str]]:
        return [(replace(r, heldout=scores.results[k].quality), k) for r, k, why in keys if k and why is None]

    claims = grow_until_ranked(
        scores, lambda: _claims([(entry(t, s, stem), mask_key(s)) for t, _, s, stem in items], validated(), scores),
        sizes, progress=stage)

    entries: list[ExportEntry] = []
    written: set[str] = set()
    for t, _, schedule, stem in items:
        e = entry(t, schedule, stem)
        train, heldout = train_result(t), scores.results[mask_key(schedule)]
        provenance = Provenance(cachesearch=__version__, created=utc_now(), study=settings.name, trial=t.number,
                                prompts=train.prompts, git=t.user_attrs.get("git"))
        metrics = ev.to_schedule_metrics(train, heldout, threshold=settings.tail_threshold)
        path = save_schedule(schedule.with_updates(metrics=metrics, provenance=provenance), schedules_dir / e.file)
        _readable(path)
        written.add(path.name)
        entries.append(e)
    baselines = []
    for r, k, why in keys:
        res = scores.results.get(k) if k else None
        if res is None or why is not None or not res.valid:
            baselines.append(replace(r, heldout=None, reason=why or (res.reason if res else None)))
        else:
            baselines.append(replace(r, heldout=res.quality, heldout_stats=res.summary(
                threshold=settings.tail_threshold, interval=True)))

    def validate(t: FrozenTrial) -> EvalResult | str:
        try:
            _, schedule = _replay(prep, t, name=f"{settings.name}-t{t.number}")
            return scores.score(schedule, sizes[0])
        except Exception as e:  # noqa: BLE001 - a row of the table says why
            return f"{type(e).__name__}: {e}"

    stage("held-out validation of each family's best", 0, 1)
    families = family_table(study.get_trials(deepcopy=False), prep.space.space.families, validate)
    stage("held-out validation of each family's best", 1, 1)

    for stale in schedules_dir.glob("*.yaml"):
        if stale.name not in written and stale.name != "index.yaml":
            stale.unlink()
    judged = [c.to_dict() for c in claims]
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
                      "validated": [r.to_dict() for r in baselines]},
        "validation": {"pairs": list(sizes), "images_scored": scores.images_scored, "claims": judged},
        "families": [r.to_dict() for r in families],
    }
    index_path = schedules_dir / "index.yaml"
    atomic_write(index_path, yaml.safe_dump(index, sort_keys=False, width=120))
    kept = {e.trial for e in entries}
    return ExportResult(schedules_dir=schedules_dir, index_path=index_path, entries=entries,
                        front_trials=[t for t in front if t.number in kept], baselines=baselines, rejected=rejected,
                        metric=ev.metric_name, claims=judged, heldout_images=scores.images_scored, families=families)
