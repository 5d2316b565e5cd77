"""A search run from start to finish: prepare (model, study, profile, baselines), search, export, report.

:func:`run_search` is what ``cachesearch run`` calls. Preparation and the finishing steps are shared by both
executors; only the trial loop differs (:mod:`.executors`, which never import this module).
"""

from __future__ import annotations

import contextlib
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._util import atomic_write
from ..schedule import BlockKind, BlockProfile
from . import executors
from .attrs import ATTR_BASELINE, ATTR_BASELINE_KIND, ATTR_BASELINES, ATTR_MAGCACHE, ATTR_PROFILE
from .claims import Claims
from .executors.base import Prepared, Progress, ray_experiment_unfinished
from .export import ExportResult, export_front
from .provenance import git_revision
from .report import write_report
from .resume import find_run, finished_run, preflight, resolve_settings
from .settings import RunSettings, SearchError, default
from .space import SearchSpace, SpaceContext, default_space, drop_unavailable, find_space, load_space
from .storage import relative_storage, run_lock
from .study import StudyHandle, load_settings, make_sampler, open_study, save_settings
from .trials import finished_count, is_full_compute, pareto_trials, recover_orphans

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from ..evaluate import Evaluator
    from .validation import Runner

__all__ = [
    "RunSummary",
    "enqueue_baselines",
    "export_run",
    "find_run",
    "finished_run",
    "open_run",
    "prepare",
    "resolve_settings",
    "run_search",
]


@dataclass
class RunSummary:
    """What a run did (for the closing summary)."""

    name: str
    run_dir: Path
    storage: str
    trials_total: int
    trials_this_session: int
    completed: int
    failed: int
    duplicates: int
    front: list[FrozenTrial]
    export: ExportResult | None = None
    report: Path | None = None
    screened: int = 0
    stopped: str = "budget"
    """``budget`` (``trial_budget`` finished trials reached), ``timeout``, ``interrupted`` or ``done``."""
    finished: int = 0
    """Trials that count toward ``--trials`` (finished, not re-queued)."""
    trial_budget: int | None = None
    timeout: float | None = None
    objective: str = "cost"
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


# -- settings ----------------------------------------------------------------------------------------------
def _build_evaluator(settings: RunSettings, cache_dir: str | None, progress: Progress) -> Evaluator:
    from ..evaluate import Evaluator  # loads torch, diffusers and the model code

    def ev_progress(stage: str, done: int, total: int) -> None:
        progress.stage(stage, done, total)

    return Evaluator(settings.eval_config(cache_dir), progress=ev_progress)


def _stored_or_given_space(settings: RunSettings, run_dir: Path, space_given: bool) -> SearchSpace | None:
    """The run's stored space (a resume), the space the user named, or None: the model's default space."""
    stored = run_dir / "space.yaml"
    if stored.is_file() and not space_given:
        return load_space(stored)
    if space_given or settings.space != default("space"):
        return load_space(find_space(settings.space))
    return None


# -- preparation -------------------------------------------------------------------------------------------
def _profile(prep_ev: Evaluator, handle: StudyHandle, run_dir: Path, progress: Progress,
             prompts: int | None = None) -> tuple[BlockProfile, str]:
    """The run's block-change profile: stored in the study (so resumes and workers agree), else computed over the
    first ``prompts`` prompts of the train pool (``--profile-prompts``)."""
    from ..evaluate import profile_blocks, profile_id, save_profile

    stored = handle.study.user_attrs.get(ATTR_PROFILE)
    if stored:
        profile = BlockProfile(blocks=tuple(stored["blocks"]), changes=tuple(tuple(r) for r in stored["changes"]))
        if not (run_dir / "profile.png").is_file():
            save_profile(profile, run_dir, metadata=prep_ev.describe())
        return profile, stored["id"]
    progress.stage("profiling block changes")
    profile = profile_blocks(prep_ev, split="train", granularity="stage", n=prompts)
    pid = profile_id(profile)
    save_profile(profile, run_dir, metadata=prep_ev.describe(),
                 title=f"block change per step: {prep_ev.source}, {prep_ev.num_inference_steps} steps")
    handle.study.set_user_attr(ATTR_PROFILE, {"id": pid, "blocks": list(profile.blocks),
                                              "changes": [list(r) for r in profile.changes]})
    return profile, pid


def _mag_ratios(prep_ev: Evaluator, handle: StudyHandle, space: SearchSpace, progress: Progress,
                notes: list[str]) -> tuple[float, ...] | None:
    """MagCache's ratios for the ``magcache`` family: stored in the study (resumes and workers agree), else
    calibrated now by diffusers' own hook on the train prompts, once per search (its time is the run's)."""
    if "magcache" not in space.families:
        return None
    stored = handle.study.user_attrs.get(ATTR_MAGCACHE)
    if stored:
        return tuple(float(r) for r in stored["ratios"])
    from ..evaluate import magcache_ratios

    progress.stage("MagCache calibration (train prompts, full compute)")
    cal = magcache_ratios(prep_ev, split="train")
    handle.study.set_user_attr(ATTR_MAGCACHE, {"ratios": list(cal.ratios), "loops": cal.loops,
                                               "seconds": round(cal.seconds, 3)})
    msg = (f"MagCache calibrated by diffusers' own hook over {cal.loops} sampling loop(s) of the train prompts "
           f"(one per image and CFG pass) in {cal.seconds:.1f} s (once per search; part of this run's time)")
    notes.append(msg)
    progress.note(msg)
    return cal.ratios


def enqueue_baselines(prep: Prepared, progress: Progress) -> dict[str, Any]:
    """Enqueue the heuristic baselines the space can express, before any sampled trial; record the rest.

    Each enqueued trial carries its baseline's name (``baseline``) and kind (``baseline_kind``). With
    ``--warm-start grid`` a small Latin hypercube per family follows them (``warm_start: grid``; screened like
    any sampled trial).
    """
    sp = prep.space.space
    enqueued: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for b in prep.space.baselines():
        params = prep.space.params_for(b.policy)
        if params is None:
            skipped[b.name] = "outside the space's ranges"
            continue
        prep.study.enqueue_trial(params, user_attrs={ATTR_BASELINE: b.name, ATTR_BASELINE_KIND: b.kind})
        enqueued[b.name] = params
    record: dict[str, Any] = {"enqueued": list(enqueued), "skipped": skipped}
    if prep.settings.warm_start == "grid":  # a Latin hypercube per family; sampled trials, not baselines
        grid = prep.space.grid(prep.settings.population, seed=prep.settings.seed)
        for params in grid:
            prep.study.enqueue_trial(params, user_attrs={"warm_start": "grid"})
        record["grid"] = len(grid)
    prep.study.set_user_attr(ATTR_BASELINES, record)
    if skipped:
        progress.note(f"{len(skipped)} baseline(s) not expressible in space {sp.name!r} were not enqueued: "
                      f"{', '.join(sorted(skipped)[:6])}{' …' if len(skipped) > 6 else ''}")
    return record


def _placeholder_profile(evaluator: Evaluator) -> BlockProfile:
    """A flat profile with the evaluator's stages and steps: lets a space be checked before the real one exists."""
    stages = evaluator.space.names(BlockKind.STAGE)
    return BlockProfile(blocks=stages, changes=tuple((0.0,) * evaluator.num_inference_steps for _ in stages))


def prepare(settings: RunSettings, progress: Progress, *, space_given: bool = False,
            cache_dir: str | None = None, recover: bool = True, evaluator: Evaluator | None = None) -> Prepared:
    """Load the model and references, open (or create) the study with checks, profile, enqueue baselines and
    recover orphaned trials. Call while holding :func:`run_lock` on the run directory.

    ``evaluator``: an already built :class:`~cachesearch.evaluate.Evaluator` for ``settings`` (else one is built).
    Without ``--space`` a new run uses :func:`~cachesearch.search.space.default_space` for the model (``dit``
    for a transformer denoiser, else ``joint``) and records its name as the run's ``space`` setting.
    """
    run_dir = settings.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    space = _stored_or_given_space(settings, run_dir, space_given)
    progress.stage(f"loading {settings.model}")
    if evaluator is None:
        evaluator = _build_evaluator(settings, cache_dir, progress)
    if evaluator.random_weights:
        progress.note(f"{evaluator.source} has random weights: quality numbers describe nothing real")
    if evaluator.metric_name != settings.metric:
        progress.note(f"quality metric {settings.metric!r} is unavailable here; using {evaluator.metric_name!r} "
                      f"(recorded in every trial and schedule file; values are not comparable across metrics)")
    if space is None:  # the model's default: dit for a transformer denoiser, joint otherwise (run.yaml says which)
        space = default_space(evaluator.space)
        settings = replace(settings, space=space.name)
    space, dropped = drop_unavailable(space, SpaceContext.of(evaluator, _placeholder_profile(evaluator)))
    for note in dropped:
        progress.note(note)
    space.resolve(SpaceContext.of(evaluator, _placeholder_profile(evaluator)))  # model-specific checks first
    handle = open_study(settings, fingerprint=evaluator.fingerprint, metric=evaluator.metric_name,
                        space_digest=space.digest, weights=evaluator.weights_id())
    offset = finished_count(handle.study)
    if not handle.created:
        progress.note(f"resuming run {settings.name} ({offset} finished trials)")
    claims = Claims(handle.study)
    if claims.enabled:  # a shared study: each process samples with its own seed (worker 0 as one process would)
        offset += 1_000_000 * claims.index("worker")
    handle.study.sampler = make_sampler(settings.sampler, seed=settings.seed, population=settings.population,
                                        offset=offset)
    if settings.executor == "ray":  # both splits, one batch per Ray task, merged into the cache once
        from .executors.ray_cluster import shard_references

        progress.stage("reference images (sharded on the Ray workers)")
        shards = shard_references(settings, evaluator)
        if shards:
            progress.note("reference images built on the Ray workers: "
                          + ", ".join(f"{split} in {n} shards" for split, n in shards.items()))
    progress.stage("reference images (train)")
    evaluator.reference("train")
    profile, pid = _profile(evaluator, handle, run_dir, progress, settings.profile_prompts)
    notes = list(dropped)
    mag = _mag_ratios(evaluator, handle, space, progress, notes)
    resolved = space.resolve(SpaceContext.of(evaluator, profile, pid, mag_ratios=mag))
    prep = Prepared(settings=settings, handle=handle, evaluator=evaluator, space=resolved,
                    objectives=settings.objectives, session=uuid.uuid4().hex[:12], run_dir=run_dir,
                    profile=profile, notes=notes + list(resolved.notes))
    for n in resolved.notes:
        progress.note(n)
    if (handle.created or ATTR_BASELINES not in handle.study.user_attrs) and (
            not claims.enabled or claims.first("baselines")):  # one process of a shared study enqueues them
        enqueue_baselines(prep, progress)
    if recover and settings.executor == "ray" and ray_experiment_unfinished(run_dir):
        recover = False  # Tuner.restore resumes those trials; the restored searcher fails the rest
    if recover:
        orphans = recover_orphans(handle.study, run_dir=run_dir)
        if orphans:
            msg = (f"recovered {len(orphans)} trial(s) left RUNNING by a process that died "
                   f"({', '.join(map(str, orphans[:8]))}); they were marked failed and re-enqueued")
            prep.notes.append(msg)
            progress.note(msg)
    if not (run_dir / "space.yaml").is_file():
        atomic_write(run_dir / "space.yaml", space.text)
    save_settings(settings, {"study": {"storage": relative_storage(handle.storage_spec, run_dir),
                                       "fingerprint": evaluator.fingerprint, "metric": evaluator.metric_name,
                                       "space": space.name, "space_digest": space.digest, "git": git_revision()}})
    return prep


# -- the whole run -----------------------------------------------------------------------------------------
def run_search(settings: RunSettings, progress: Progress | None = None, *, space_given: bool = False,
               cache_dir: str | None = None, export: bool = True, evaluator: Evaluator | None = None,
               on_prepared: Callable[[Prepared], None] | None = None) -> RunSummary:
    """Search (local or Ray executor), then export the Pareto front with held-out metrics and write the report.

    Resumes the study of ``settings.name`` when it exists. Ctrl-C stops after the current trial (a second one
    aborts it; it is re-run on resume) and skips export.
    """
    from optuna.trial import TrialState

    progress = progress or Progress()
    t0 = time.monotonic()
    if evaluator is None:
        settings.eval_config(cache_dir)  # invalid evaluation settings fail here, before the run folder exists
    preflight(settings)  # an unreachable database or cluster fails here, before the model loads
    new = not settings.run_dir.exists()
    with run_lock(settings.run_dir), _early_pool(settings, cache_dir, evaluator) as pool, \
            contextlib.ExitStack() as cleanup:
        try:
            prep = prepare(settings, progress, space_given=space_given, cache_dir=cache_dir, evaluator=evaluator)
        except BaseException:
            if new:  # nothing was searched: leave no folder behind (a wrong model, space or option)
                shutil.rmtree(settings.run_dir, ignore_errors=True)
            raise
        prep.pool = pool
        cleanup.callback(_shut_down_replacement, prep, pool)
        if on_prepared is not None:
            on_prepared(prep)
        loop = executors.get(settings.executor)(prep, progress)
        study = prep.study
        trials = study.get_trials(deepcopy=False)
        summary = RunSummary(
            name=settings.name, run_dir=settings.run_dir, storage=prep.handle.storage_spec,
            trials_total=len(trials), trials_this_session=loop.evaluated, stopped=loop.stopped,
            completed=sum(t.state == TrialState.COMPLETE for t in trials),
            failed=sum(t.state == TrialState.FAIL for t in trials),
            duplicates=sum("duplicate_of" in t.user_attrs for t in trials),
            screened=sum("screened" in t.user_attrs and "duplicate_of" not in t.user_attrs for t in trials),
            front=[t for t in pareto_trials(study) if not is_full_compute(t)], notes=list(prep.notes),
            objective=settings.objective, finished=finished_count(study), trial_budget=settings.trials,
            timeout=settings.timeout,
        )
        if export and loop.stopped != "interrupted":
            try:
                with _heldout_runner(prep) as runner:
                    summary.export = export_front(prep, progress, runner=runner)
                summary.report = write_report(prep, summary.export, progress)
            except OSError as e:
                raise _export_error(e, settings) from e
            summary.front = summary.export.front_trials
        summary.seconds = time.monotonic() - t0
        return summary


@contextlib.contextmanager
def _early_pool(settings: RunSettings, cache_dir: str | None, evaluator: Evaluator | None) -> Iterator[Any]:
    """The worker processes of a local run with ``--workers`` > 1, started before it prepares so that their
    start-up (imports, model, metric) overlaps the profile rather than the search's ``--timeout``; shut down when
    the run ends. ``None`` for other runs, and where the caller brought its own evaluator (its configuration is
    not the settings')."""
    if settings.executor != "local" or settings.workers < 2 or evaluator is not None:
        yield None
        return
    from .executors.pool import start_pool
    from .executors.worker import worker_eval_config

    pool = start_pool(settings.workers, worker_eval_config(settings, cache_dir))
    try:
        yield pool
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _shut_down_replacement(prep: Prepared, started: Any) -> None:
    """Shut down the pool the search started in place of the run's own (a worker died: :func:`.pool.run_pool`
    restarts it and hands it on to the export); :func:`_early_pool` shuts down the one it started."""
    if prep.pool is not None and prep.pool is not started:
        prep.pool.shutdown(wait=False, cancel_futures=True)


@contextlib.contextmanager
def _heldout_runner(prep: Prepared) -> Iterator[Runner | None]:
    """Held-out validation on ``--workers`` local processes, as the search ran (not under measured latency: the
    timings of processes sharing the CPU would not be comparable); ``None``: in this process."""
    settings = prep.settings
    if settings.executor != "local" or settings.workers < 2 or settings.latency == "measured":
        yield None
        return
    from .executors.pool import heldout_runner

    with heldout_runner(prep, settings.workers) as runner:
        yield runner


def _export_error(e: OSError, settings: RunSettings) -> SearchError:
    """A failed export (disk full, …) as one line naming the file; files already there are whole (atomic writes)."""
    what = f"cannot write {e.filename}: {e.strerror}" if e.filename else f"{type(e).__name__}: {e}"
    return SearchError(f"export failed: {what}; the study is intact and no partial file was left: free space and "
                       f"run `cachesearch export --name {settings.name}`")


def open_run(name: str, out: str | None = None, progress: Progress | None = None, *,
             cache_dir: str | None = None, evaluator: Evaluator | None = None) -> Prepared:
    """Open an existing run for export or report: its settings, space, model and study (nothing is created).

    ``evaluator``: an already built evaluator for the run's settings (else one is built)."""
    out = default("out") if out is None else out
    progress = progress or Progress()
    run_dir = find_run(name, out)
    settings = load_settings(run_dir)
    if settings is None:  # removed since find_run looked
        raise SearchError(f"run {name!r} under {out} has no run.yaml any more")
    settings = settings.merged({"name": name, "out": out})
    space = load_space(run_dir / "space.yaml")
    progress.stage(f"loading {settings.model}")
    if evaluator is None:
        evaluator = _build_evaluator(settings, cache_dir, progress)
    handle = open_study(settings, fingerprint=evaluator.fingerprint, metric=evaluator.metric_name,
                        space_digest=space.digest, weights=evaluator.weights_id(), create=False)
    profile, pid = _profile(evaluator, handle, run_dir, progress, settings.profile_prompts)
    mag = _mag_ratios(evaluator, handle, space, progress, [])
    resolved = space.resolve(SpaceContext.of(evaluator, profile, pid, mag_ratios=mag))
    return Prepared(settings=settings, handle=handle, evaluator=evaluator, space=resolved,
                    objectives=settings.objectives, session=uuid.uuid4().hex[:12], run_dir=run_dir,
                    profile=profile, notes=list(resolved.notes))


def export_run(name: str, out: str | None = None, progress: Progress | None = None, *,
               cache_dir: str | None = None, report: bool = True,
               evaluator: Evaluator | None = None) -> tuple[ExportResult, Path | None]:
    """Re-export the front of an existing run (and rewrite its report); returns (ExportResult, report path)."""
    out = default("out") if out is None else out
    progress = progress or Progress()
    with run_lock(find_run(name, out)):
        prep = open_run(name, out, progress, cache_dir=cache_dir, evaluator=evaluator)
        try:
            with _heldout_runner(prep) as runner:
                result = export_front(prep, progress, runner=runner)
            path = write_report(prep, result, progress) if report else None
        except OSError as e:
            raise _export_error(e, prep.settings) from e
    return result, path
