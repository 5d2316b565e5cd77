"""A search run from start to finish: prepare (model, study, profile, baselines), search, export, report.

:func:`run_search` is what ``cachesearch run`` calls. Preparation and the finishing steps are shared by both
executors; only the trial loop differs (:mod:`._local`, :mod:`._ray`).
"""

from __future__ import annotations

import inspect
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._objective import Objectives, Outcome, git_revision, json_safe_attrs
from ._spaces import ResolvedSpace, SearchSpace, SpaceContext, find_space, load_space
from ._study import (
    ATTR_BASELINES,
    ATTR_PROFILE,
    RunSettings,
    SearchError,
    StudyHandle,
    finished_count,
    load_settings,
    make_sampler,
    open_study,
    pareto_trials,
    recover_orphans,
    run_lock,
    save_settings,
    write_text_atomic,
)

__all__ = [
    "Prepared",
    "Progress",
    "RunSummary",
    "export_run",
    "open_run",
    "prepare",
    "record_outcome",
    "resolve_settings",
    "run_search",
]


class Progress:
    """Receives progress events; the CLI draws them with rich. The base class ignores everything."""

    def stage(self, text: str, done: int | None = None, total: int | None = None) -> None:
        """A preparation or finishing step (``done``/``total`` when it has parts)."""

    def start(self, *, total: int | None, done: int, timeout: float | None) -> None:
        """The trial loop starts with ``done`` finished trials of ``total`` (None: no trial budget)."""

    def trial(self, *, number: int, done: int, front: int, outcome: Outcome) -> None:
        """A trial finished."""

    def note(self, text: str) -> None:
        """Something the user should know (orphans recovered, baselines skipped, stop requested)."""

    def end(self) -> None:
        """The trial loop ended."""


@dataclass
class Prepared:
    """Everything a trial loop needs."""

    settings: RunSettings
    handle: StudyHandle
    evaluator: Any
    space: ResolvedSpace
    objectives: Objectives
    session: str
    run_dir: Path
    profile: Any = None
    notes: list[str] = field(default_factory=list)

    @property
    def study(self) -> Any:
        """The Optuna study."""
        return self.handle.study


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
    front: list[Any]
    export: Any = None
    report: Path | None = None
    stopped: str = "budget"
    objective: str = "cost"
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


# -- settings ----------------------------------------------------------------------------------------------
def resolve_settings(name: str | None, explicit: dict[str, Any], out: str = "artifacts/runs") -> RunSettings:
    """Settings of a run: a resumed run's stored settings with explicit options on top, else defaults + options.

    ``explicit`` holds only the options the user gave (others None).
    """
    from ._study import default_name

    explicit = {k: v for k, v in explicit.items() if v is not None}
    if name is None:
        model = explicit.get("model", "embedded")
        name = default_name(model, explicit.get("scheduler"), explicit.get("steps", RunSettings.steps))
    run_dir = Path(out).expanduser() / name
    stored = load_settings(run_dir)
    if stored is not None:
        return stored.merged({**explicit, "name": name, "out": out})
    return RunSettings(name=name, out=out, **explicit)


def _eval_config(settings: RunSettings, cache_dir: str | None = None) -> Any:
    from ..evaluate import EvalConfig

    kwargs: dict[str, Any] = {}
    if cache_dir is not None:
        kwargs["cache_dir"] = cache_dir
    return EvalConfig(
        model=settings.model, device=settings.device, scheduler=settings.scheduler,
        num_inference_steps=settings.steps, guidance_scale=settings.guidance_scale, n_train=settings.n_train,
        n_heldout=settings.n_heldout, prompts_file=settings.prompts_file, metric=settings.metric,
        latency=settings.latency, **kwargs,
    )


def _load_space(settings: RunSettings, run_dir: Path, space_given: bool) -> SearchSpace:
    stored = run_dir / "space.yaml"
    if stored.is_file() and not space_given:
        return load_space(stored)
    return load_space(find_space(settings.space))


def space_context(evaluator: Any, profile: Any = None, profile_id: str | None = None) -> SpaceContext:
    """What the space needs to know about the evaluator's model and sampler."""
    from ..schedule import BlockKind

    scheduler = evaluator.pipe.scheduler
    accepts = "timesteps" in inspect.signature(scheduler.set_timesteps).parameters
    return SpaceContext(
        num_steps=evaluator.num_inference_steps, scheduler=type(scheduler).__name__, accepts_timesteps=accepts,
        stages=evaluator.space.names(BlockKind.STAGE), blocks=evaluator.space.names(),
        n_branches=len(evaluator.space.deepcache_branches), profile=profile, profile_id=profile_id,
    )


# -- preparation -------------------------------------------------------------------------------------------
def _profile(prep_ev: Any, handle: StudyHandle, run_dir: Path, progress: Progress) -> tuple[Any, str]:
    """The run's block-change profile: stored in the study (so resumes and workers agree), else computed."""
    from ..evaluate import profile_blocks, profile_id, save_profile
    from ..schedule import BlockProfile

    stored = handle.study.user_attrs.get(ATTR_PROFILE)
    if stored:
        profile = BlockProfile(blocks=tuple(stored["blocks"]), changes=tuple(tuple(r) for r in stored["changes"]))
        if not (run_dir / "profile.png").is_file():
            save_profile(profile, run_dir, metadata=prep_ev.describe())
        return profile, stored["id"]
    progress.stage("profiling block changes")
    profile = profile_blocks(prep_ev, split="train", granularity="stage")
    pid = profile_id(profile)
    save_profile(profile, run_dir, metadata=prep_ev.describe(),
                 title=f"block change per step: {prep_ev.source}, {prep_ev.num_inference_steps} steps")
    handle.study.set_user_attr(ATTR_PROFILE, {"id": pid, "blocks": list(profile.blocks),
                                              "changes": [list(r) for r in profile.changes]})
    return profile, pid


def _baseline_grid(space: SearchSpace) -> dict[str, Any]:
    return dict(space.baseline_options)


def enqueue_baselines(prep: Prepared, progress: Progress) -> dict[str, Any]:
    """Enqueue the heuristic baselines the space can express, before any sampled trial; record the rest."""
    from ..evaluate import baselines

    sp = prep.space.space
    opts = _baseline_grid(sp)
    kwargs: dict[str, Any] = {}
    if "steps" in opts and opts["steps"].get("fractions"):
        kwargs["step_fractions"] = tuple(opts["steps"]["fractions"])
    if "deepcache" in opts and opts["deepcache"].get("intervals"):
        kwargs["intervals"] = tuple(opts["deepcache"]["intervals"])
    if "blockcaching" in opts and opts["blockcaching"].get("thresholds"):
        kwargs["thresholds"] = tuple(opts["blockcaching"]["thresholds"])
    profile = prep.profile if "blockcaching" in sp.baselines else None
    candidates = baselines(prep.evaluator, profile=profile, **kwargs)
    kinds = {"steps": "steps-", "deepcache": "deepcache-", "blockcaching": "blockcaching-"}
    enqueued: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for name, policy in candidates:
        kind = next(k for k, prefix in kinds.items() if name.startswith(prefix))
        if kind not in sp.baselines:
            continue
        params = prep.space.params_for(policy)
        if params is None:
            skipped[name] = "outside the space's ranges"
            continue
        prep.study.enqueue_trial(params, user_attrs={"baseline": name})
        enqueued[name] = params
    record = {"enqueued": list(enqueued), "skipped": skipped}
    prep.study.set_user_attr(ATTR_BASELINES, record)
    if skipped:
        progress.note(f"{len(skipped)} baseline(s) not expressible in space {sp.name!r} were not enqueued: "
                      f"{', '.join(sorted(skipped)[:6])}{' …' if len(skipped) > 6 else ''}")
    return record


def _placeholder_profile(evaluator: Any) -> Any:
    """A flat profile with the evaluator's stages and steps: lets a space be checked before the real one exists."""
    from ..schedule import BlockKind, BlockProfile

    stages = evaluator.space.names(BlockKind.STAGE)
    return BlockProfile(blocks=stages, changes=tuple((0.0,) * evaluator.num_inference_steps for _ in stages))


def ray_experiment_unfinished(run_dir: Path) -> bool:
    """Whether the run has a Ray Tune experiment whose driver stopped before it finished (see ``_ray``)."""
    current = run_dir / "ray" / "current"
    if not current.is_file():
        return False
    exp = run_dir / "ray" / current.read_text(encoding="utf-8").strip()
    return exp.is_dir() and not (exp / ".cachesearch-finished").exists() and any(exp.glob("experiment_state-*.json"))


def prepare(settings: RunSettings, progress: Progress, *, space_given: bool = False,
            cache_dir: str | None = None, recover: bool = True, evaluator: Any = None) -> Prepared:
    """Load the model and references, open (or create) the study with checks, profile, enqueue baselines and
    recover orphaned trials. Call while holding :func:`run_lock` on the run directory.

    ``evaluator``: an already built :class:`~cachesearch.evaluate.Evaluator` for ``settings`` (else one is built).
    """
    from ..evaluate import Evaluator

    run_dir = settings.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    space = _load_space(settings, run_dir, space_given)
    progress.stage(f"loading {settings.model}")

    def ev_progress(stage: str, done: int, total: int) -> None:
        progress.stage(stage, done, total)

    if evaluator is None:
        evaluator = Evaluator(_eval_config(settings, cache_dir), progress=ev_progress)
    if evaluator.random_weights:
        progress.note(f"{evaluator.source} has random weights: quality numbers describe nothing real")
    if evaluator.metric_name != settings.metric:
        progress.note(f"quality metric {settings.metric!r} is unavailable here; using {evaluator.metric_name!r} "
                      f"(recorded in every trial and schedule file; values are not comparable across metrics)")
    space.resolve(space_context(evaluator, _placeholder_profile(evaluator)))  # model-specific checks first
    handle = open_study(settings, fingerprint=evaluator.fingerprint, metric=evaluator.metric_name,
                        space_digest=space.digest, weights=evaluator.weights_id())
    offset = finished_count(handle.study)
    handle.study.sampler = make_sampler(settings.sampler, seed=settings.seed, population=settings.population,
                                        offset=offset)
    progress.stage("reference images (train)")
    evaluator.reference("train")
    profile, pid = _profile(evaluator, handle, run_dir, progress)
    resolved = space.resolve(space_context(evaluator, profile, pid))
    prep = Prepared(settings=settings, handle=handle, evaluator=evaluator, space=resolved,
                    objectives=settings.objectives, session=uuid.uuid4().hex[:12], run_dir=run_dir,
                    profile=profile, notes=list(resolved.notes))
    for n in resolved.notes:
        progress.note(n)
    if handle.created or ATTR_BASELINES not in handle.study.user_attrs:
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
        write_text_atomic(run_dir / "space.yaml", space.text)
    save_settings(settings, {"study": {"storage": handle.storage_spec, "fingerprint": evaluator.fingerprint,
                                       "metric": evaluator.metric_name, "space": space.name,
                                       "space_digest": space.digest, "git": git_revision()}})
    return prep


def record_outcome(study: Any, trial: Any, outcome: Outcome) -> None:
    """Store an outcome on its (RUNNING) trial and tell the study: COMPLETE with values, or FAIL with reason.

    Never leaves the trial RUNNING: if Optuna refuses the values, the trial fails with that reason.
    """
    from optuna.trial import TrialState

    attrs = json_safe_attrs(outcome.user_attrs)
    if not outcome.ok:
        attrs["reason"] = outcome.reason or "failed"
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    if outcome.ok:
        for key, value in outcome.constraints.items():
            trial.set_constraint(key, float(value))
        try:
            study.tell(trial, list(outcome.values))  # type: ignore[arg-type]
            return
        except Exception as e:  # noqa: BLE001 - e.g. values Optuna rejects; the trial must not stay RUNNING
            trial.set_user_attr("reason", f"tell failed: {type(e).__name__}: {e}")
    study.tell(trial, state=TrialState.FAIL)


# -- the whole run -----------------------------------------------------------------------------------------
def run_search(settings: RunSettings, progress: Progress | None = None, *, space_given: bool = False,
               cache_dir: str | None = None, export: bool = True, evaluator: Any = None,
               on_prepared: Callable[[Prepared], None] | None = None) -> RunSummary:
    """Search (local or Ray executor), then export the Pareto front with held-out metrics and write the report.

    Resumes the study of ``settings.name`` when it exists. Ctrl-C stops after the current trial (a second one
    aborts it; it is re-run on resume) and skips export.
    """
    from optuna.trial import TrialState

    from ._export import export_front
    from ._report import write_report

    progress = progress or Progress()
    t0 = time.monotonic()
    with run_lock(settings.run_dir):
        prep = prepare(settings, progress, space_given=space_given, cache_dir=cache_dir, evaluator=evaluator)
        if on_prepared is not None:
            on_prepared(prep)
        if settings.executor == "ray":
            from ._ray import run_ray

            loop = run_ray(prep, progress)
        else:
            from ._local import run_local

            loop = run_local(prep, progress)
        study = prep.study
        trials = study.get_trials(deepcopy=False)
        summary = RunSummary(
            name=settings.name, run_dir=settings.run_dir, storage=prep.handle.storage_spec,
            trials_total=len(trials), trials_this_session=loop.evaluated, stopped=loop.stopped,
            completed=sum(t.state == TrialState.COMPLETE for t in trials),
            failed=sum(t.state == TrialState.FAIL for t in trials),
            duplicates=sum("duplicate_of" in t.user_attrs for t in trials),
            front=pareto_trials(study), notes=list(prep.notes), objective=settings.objective,
        )
        if export and loop.stopped != "interrupted":
            summary.export = export_front(prep, progress)
            summary.report = write_report(prep, summary.export, progress)
            summary.front = summary.export.front_trials
        summary.seconds = time.monotonic() - t0
        return summary


def open_run(name: str, out: str = "artifacts/runs", progress: Progress | None = None, *,
             cache_dir: str | None = None, evaluator: Any = None) -> Prepared:
    """Open an existing run for export or report: its settings, space, model and study (nothing is created).

    ``evaluator``: an already built evaluator for the run's settings (else one is built)."""
    from ..evaluate import Evaluator

    progress = progress or Progress()
    run_dir = Path(out).expanduser() / name
    settings = load_settings(run_dir)
    if settings is None:
        known = sorted(p.parent.name for p in Path(out).expanduser().glob("*/run.yaml"))
        raise SearchError(f"no run named {name!r} in {out} (no {run_dir / 'run.yaml'}); runs there: "
                          f"{', '.join(known) or 'none'}")
    settings = settings.merged({"name": name, "out": out})
    space = load_space(run_dir / "space.yaml")
    progress.stage(f"loading {settings.model}")

    def ev_progress(stage: str, done: int, total: int) -> None:
        progress.stage(stage, done, total)

    if evaluator is None:
        evaluator = Evaluator(_eval_config(settings, cache_dir), progress=ev_progress)
    handle = open_study(settings, fingerprint=evaluator.fingerprint, metric=evaluator.metric_name,
                        space_digest=space.digest, weights=evaluator.weights_id(), create=False)
    profile, pid = _profile(evaluator, handle, run_dir, progress)
    resolved = space.resolve(space_context(evaluator, profile, pid))
    return Prepared(settings=settings, handle=handle, evaluator=evaluator, space=resolved,
                    objectives=settings.objectives, session=uuid.uuid4().hex[:12], run_dir=run_dir,
                    profile=profile, notes=list(resolved.notes))


def export_run(name: str, out: str = "artifacts/runs", progress: Progress | None = None, *,
               cache_dir: str | None = None, report: bool = True, evaluator: Any = None) -> tuple[Any, Path | None]:
    """Re-export the front of an existing run (and rewrite its report); returns (ExportResult, report path)."""
    from ._export import export_front
    from ._report import write_report

    progress = progress or Progress()
    with run_lock(Path(out).expanduser() / name):
        prep = open_run(name, out, progress, cache_dir=cache_dir, evaluator=evaluator)
        result = export_front(prep, progress)
        path = write_report(prep, result, progress) if report else None
    return result, path
