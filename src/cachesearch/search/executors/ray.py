"""The Ray executor: Ray Tune ``Tuner`` + ``OptunaSearch`` on the run's study (same storage, same study name).

* The driver owns the study: a subclass of ``OptunaSearch`` asks trials (define-by-run over the search space),
  tags them with the driver's runner attributes, and records each worker's outcome itself (user attributes,
  constraints, ``tell``). A failure is recorded explicitly as a FAIL trial with its reason, never as NaN
  metrics (``OptunaSearch.on_trial_complete`` would only log a warning and leave the trial RUNNING).
* Workers replay a trial's parameters with ``optuna.trial.FixedTrial`` through the same pure trial → policy
  map, and keep a module-level cache of the evaluator per configuration, so a worker process (actors are
  reused) loads the model and the reference images once. They read the study (never write it) to skip masks
  that were already evaluated.
* ``FailureConfig`` retries trials whose worker died; ``Tuner.restore`` continues an experiment whose driver
  crashed; trials that were RUNNING in the study but unknown to the restored searcher are failed and
  re-enqueued.
* ``--address`` joins an existing cluster; every node must have cachesearch installed and must reach the
  storage (use a PostgreSQL ``--storage`` across hosts: the journal file is for one host).
"""

from __future__ import annotations

import gc
import logging
import os
import pickle
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FixedTrial, Trial, TrialState
from ray.tune import Callback
from ray.tune.search.optuna import OptunaSearch

from ...evaluate import Evaluator
from ..attrs import baseline_attrs
from ..masks import KnownMasks
from ..objective import evaluate_candidate
from ..outcome import Outcome
from ..provenance import runner_attrs
from ..space import ResolvedSpace
from ..storage import open_storage
from ..study import make_sampler
from ..trials import finished_count, front_size, recover_orphans
from .base import FINISHED_MARK, RAY_DIR, LoopResult, Prepared, Progress, record_outcome
from .ray_cluster import STARTED, init_ray
from .worker import WORKER, WorkerSetup, worker_setup, worker_state

__all__ = ["StudySearcher", "run_ray"]

_RESULT_KEY = "cachesearch"
_NUMBER_KEY = "__cachesearch_trial_number"
_MAX_FAILURES = 2
"""``FailureConfig.max_failures``: a trial whose worker (or node) died is retried this many times."""
_ID_KEY = "__cachesearch_trial_id"

# Driver-side state the (pickled) searcher and callback look up at call time, so a searcher restored by
# Tuner.restore reports to this process's progress bar and tags trials with this process's runner.
_DRIVER: dict[str, Any] = {"progress": None, "runner": {}, "done": 0}
# Worker-side caches (evaluator + resolved space per configuration, the study handle per storage): WORKER.
_WORKER = WORKER


def _worker_study(setup: WorkerSetup) -> optuna.Study:
    key = f"study:{setup.storage}:{setup.study_name}"
    if key not in _WORKER:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        _WORKER[key] = optuna.load_study(study_name=setup.study_name, storage=open_storage(setup.storage))
    return _WORKER[key]


def _trainable(config: dict[str, Any], setup: WorkerSetup) -> None:
    """Ray Tune function trainable: evaluate one trial's candidate and report its outcome."""
    import torch
    from ray import tune

    torch.set_num_threads(max(1, setup.threads))
    names = setup.objectives.names
    number = config.get(_NUMBER_KEY)
    params = {k: v for k, v in config.items() if not k.startswith("__cachesearch")}
    study = _worker_study(setup)
    trials = study.get_trials(deepcopy=False)
    frozen = trials[number] if isinstance(number, int) and number < len(trials) else None
    if frozen is not None and frozen.state.is_finished():
        # Tuner.restore re-ran a trial that the crashed driver had already recorded: report, do not evaluate.
        outcome = Outcome(values=None, reason="already recorded", user_attrs={"already_recorded": True})
    else:
        ev, space = worker_state(setup)
        known = KnownMasks()
        for t in trials:
            known.add_trial(t)
        try:
            policy = space.suggest(FixedTrial(params, number=number or 0))
        except Exception as e:  # noqa: BLE001 - a parameter combination the policy refuses
            outcome = Outcome(values=None, reason=f"policy: {type(e).__name__}: {e}")
        else:
            outcome = evaluate_candidate(ev, policy, setup.objectives, known=known, number=number,
                                         study=setup.study_name,
                                         screening=None if frozen is not None and baseline_attrs(frozen.user_attrs)
                                         else setup.screening)
        # ``loads``: evaluators (model + references) this worker process built so far
        # ``node``: the Ray node id (hosts may share a name, e.g. containers or several raylets on one machine)
        outcome.user_attrs["worker"] = {"host": os.uname().nodename, "pid": os.getpid(),
                                        "loads": _WORKER.get("loads", 0), "node": _node_id()}
    values = outcome.values or (None, None)
    tune.report({names[0]: values[0], names[1]: values[1], _RESULT_KEY: outcome.to_json()})


def _node_id() -> str | None:
    import ray

    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - not in a Ray worker (tests call the trainable directly)
        return None


def _error_text(trial: Any) -> str:
    """The last error of a Tune trial (its ``error.txt`` holds one entry per failure)."""
    path = getattr(trial, "error_file", None)
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace") if path else ""
    except OSError:
        return ""
    return "\n".join(text.rsplit("Failure # ", 1)[-1].splitlines()[1:]) if "Failure # " in text else text


def _error_summary(text: str) -> str:
    """One line: Ray's cause lines (e.g. "The actor died because its node has died. Node Id: …; the actor's
    node was terminated unexpectedly: health check failed …"), else the error's last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    cause = [line for line in lines if "because" in line or "terminated" in line or "node" in line.lower()
             and ":" in line and not line.startswith(("File ", "class_name", "actor_id"))]
    return " ".join("; ".join(cause or lines[-1:]).split())[:400] or "unknown error"


def _worker_lost(text: str) -> bool:
    """Whether the error is the worker process (or its node) dying, not the trial raising."""
    return "The actor died" in text or "ActorDiedError" in text or "RayActorError" in text


class _TrialEvents(Callback):
    """Tune callback (driver side): records each retried failure (``FailureConfig``) on its Optuna trial, so a
    lost worker or node is visible in the study, and keeps the Tune trials for the searcher's failure reason.

    Stateless (it reads ``_DRIVER``): it is pickled with the experiment and works after ``Tuner.restore``."""

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        _DRIVER.setdefault("tune_trials", {})[trial.trial_id] = trial

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        study, trial_id = _DRIVER.get("study"), trial.config.get(_ID_KEY)
        if study is None or not isinstance(trial_id, int):
            return
        error = _error_summary(_error_text(trial))
        retries = list(study._storage.get_trial(trial_id).user_attrs.get("ray_retries", []))
        retries.append({"failure": trial.run_metadata.num_failures, "error": error})
        study._storage.set_trial_user_attr(trial_id, "ray_retries", retries)
        progress = _DRIVER.get("progress")
        if progress is not None:
            progress.note(f"trial {trial.config.get(_NUMBER_KEY)}: its worker failed ({error}); retrying "
                          f"(failure {len(retries)} of {_MAX_FAILURES + 1} allowed)")


class _DefineByRun:
    """OptunaSearch's define-by-run space: suggest every parameter of the run's space (picklable)."""

    def __init__(self, space: ResolvedSpace) -> None:
        self.space = space

    def __call__(self, trial: optuna.Trial) -> None:
        self.space.suggest(trial)


class StudySearcher(OptunaSearch):
    """Asks trials from the run's study and records every outcome explicitly (see module docstring)."""

    def __init__(self, *, storage_spec: str, run_dir: str, **kwargs: Any) -> None:
        self._storage_spec = storage_spec
        self._run_dir = run_dir
        super().__init__(**kwargs)

    # -- pickling: Tune pickles the searcher in tuner.pkl and checkpoints; the study is re-opened ----------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_ot_study"] = None
        state["_ot_trials"] = {k: (t.number, t._trial_id) for k, t in self._ot_trials.items()}
        state["_sampler"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reopen()

    def _reopen(self) -> None:
        if self._ot_study is not None:
            return
        storage = open_storage(self._storage_spec)
        sampler = _DRIVER.get("sampler") or make_sampler("nsga2", seed=None, population=24)
        self._sampler = sampler
        self._ot_study = optuna.load_study(study_name=self._study_name, storage=storage, sampler=sampler)
        pending = self._ot_trials
        self._ot_trials = {}
        for tune_id, ref in pending.items():
            number, trial_id = ref if isinstance(ref, tuple) else (ref.number, ref._trial_id)
            self._ot_trials[tune_id] = Trial(self._ot_study, trial_id)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__getstate__(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        state["_ot_study"] = None
        self.__setstate__(state)
        # Trials the crashed driver had asked but Tune does not know about are orphans: fail + re-enqueue.
        keep = [t.number for k, t in self._ot_trials.items() if k not in self._completed_trials]
        orphans = recover_orphans(self._ot_study, run_dir=Path(self._run_dir), keep=keep)
        progress = _DRIVER.get("progress")
        if orphans and progress is not None:
            progress.note(f"recovered {len(orphans)} orphaned trial(s) after restoring the Ray experiment")

    # -- asking and telling ------------------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        self._reopen()
        if trial_id not in self._ot_trials:  # re-enqueued trials (lost workers, orphans) first
            requeued = self._pop_requeued()
            if requeued is not None:
                self._ot_trials[trial_id] = requeued
        config = super().suggest(trial_id)
        if config is None:
            return None
        ot_trial = self._ot_trials[trial_id]
        for key, value in _DRIVER.get("runner", {}).items():
            ot_trial.set_user_attr(key, value)
        config[_NUMBER_KEY] = ot_trial.number
        config[_ID_KEY] = ot_trial._trial_id
        return config

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        self._reopen()
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        self._completed_trials.add(trial_id)
        outcome = None
        if result and isinstance(result.get(_RESULT_KEY), str):
            try:
                outcome = Outcome.from_json(result[_RESULT_KEY])
            except (ValueError, KeyError, TypeError) as e:
                outcome = Outcome(values=None, reason=f"unreadable worker result: {e}")
        if outcome is None and error:
            tune_trial = _DRIVER.get("tune_trials", {}).get(trial_id)
            text = _error_text(tune_trial) if tune_trial is not None else ""
            cause = _error_summary(text) if text else "the trial raised or its worker died"
            lost = _worker_lost(text)
            if lost and self._requeue(ot_trial, cause):
                return
            outcome = Outcome(values=None, reason=f"worker error (FailureConfig retries exhausted): {cause}")
        if outcome is None:
            outcome = Outcome(values=None, reason="the worker reported no result")
        frozen = self._ot_study._storage.get_trial(ot_trial._trial_id)
        if outcome.user_attrs.get("already_recorded") or frozen.state != TrialState.RUNNING:
            return
        record_outcome(self._ot_study, ot_trial, outcome)
        progress = _DRIVER.get("progress")
        _DRIVER["done"] = finished_count(self._ot_study)
        if progress is not None:
            progress.trial(number=ot_trial.number, done=_DRIVER["done"],
                           front=front_size(self._ot_study), outcome=outcome)


    def _requeue(self, ot_trial: Trial, cause: str) -> bool:
        """A trial whose worker or node was lost: FAIL with the reason (``requeued``: it does not count toward
        the budget) and enqueue its parameters, asked before any other waiting trial (:meth:`suggest`), so
        the candidate is still evaluated. Ray Tune's own retry (FailureConfig) does not always happen: one
        lost node can count as two failures of the trial, the second while it is PENDING for its retry, which
        errors it. At most ``_MAX_FAILURES`` requeues along a chain; returns whether it requeued."""
        frozen = self._ot_study._storage.get_trial(ot_trial._trial_id)
        lost = int(frozen.user_attrs.get("workers_lost", 0)) + 1
        if lost > _MAX_FAILURES:
            return False
        storage = self._ot_study._storage
        storage.set_trial_user_attr(ot_trial._trial_id, "reason", f"worker lost: {cause}; re-enqueued")
        storage.set_trial_user_attr(ot_trial._trial_id, "requeued", True)
        storage.set_trial_state_values(ot_trial._trial_id, TrialState.FAIL)
        params = dict(frozen.system_attrs.get("fixed_params") or {})
        params.update(frozen.params)
        self._ot_study.enqueue_trial(params, user_attrs={"requeued_from": frozen.number, "workers_lost": lost,
                                                         **baseline_attrs(frozen.user_attrs)})
        progress = _DRIVER.get("progress")
        if progress is not None:
            progress.note(f"trial {frozen.number}: worker lost ({cause}); re-enqueued")
        return True

    def _pop_requeued(self) -> Trial | None:
        """The oldest waiting re-enqueued trial, set RUNNING (as ``Study.ask`` pops a waiting trial)."""
        storage = self._ot_study._storage
        for t in self._ot_study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            if "requeued_from" not in t.user_attrs:
                continue
            try:
                if storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                    return Trial(self._ot_study, t._trial_id)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
        return None


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def _experiment(run_dir: Path) -> tuple[Path, bool]:
    """The Tune experiment directory to use and whether it is an unfinished one to restore."""
    from ray.tune import Tuner

    root = run_dir / RAY_DIR
    root.mkdir(parents=True, exist_ok=True)
    current = root / "current"
    if current.is_file():
        exp = root / current.read_text(encoding="utf-8").strip()
        if exp.is_dir() and not (exp / FINISHED_MARK).exists() and Tuner.can_restore(str(exp)):
            return exp, True
        n = int(exp.name.rsplit("-", 1)[-1]) + 1 if exp.name.rsplit("-", 1)[-1].isdigit() else 1
    else:
        n = 1
    exp = root / f"tune-{n}"
    current.write_text(exp.name, encoding="utf-8")
    return exp, False


def run_ray(prep: Prepared, progress: Progress) -> LoopResult:
    """Run the remaining trials of the study on Ray Tune workers (see module docstring)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "60")
    import ray
    import torch
    from ray import tune

    # Tune logs a warning for restored trials that never reported (their results live in the study).
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)

    settings, study = prep.settings, prep.study
    run_dir = prep.run_dir.resolve()
    local_gpu = settings.device.startswith("cuda") and torch.cuda.is_available()
    started_ray = init_ray(settings) or STARTED.pop("by_references", False)
    # On a cluster the GPUs are the workers' (the driver's host may have none): one GPU per trial if any
    use_gpu = settings.device.startswith("cuda") and (
        ray.cluster_resources().get("GPU", 0) >= 1 if settings.address else local_gpu)
    cpus = ray.cluster_resources().get("CPU", settings.workers)
    cpus_per_trial = max(1, int(cpus // settings.workers)) if not settings.address else 1
    resources = {"cpu": cpus_per_trial, "gpu": 1 if use_gpu else 0}

    setup = worker_setup(prep, threads=cpus_per_trial)
    trainable = tune.with_resources(tune.with_parameters(_trainable, setup=setup), resources)
    _DRIVER.update(progress=progress, runner=runner_attrs(prep.session, run_dir), sampler=study.sampler,
                   study=study, tune_trials={})

    # The driver's model is not needed while workers run (and would hold GPU memory): release it.
    evaluator_config = prep.ev.config
    prep.evaluator = None
    gc.collect()
    if local_gpu:
        torch.cuda.empty_cache()

    resolved = prep.space
    start_done = finished_count(study)
    budget = settings.trials
    deadline = time.monotonic() + settings.timeout if settings.timeout else None
    progress.start(total=budget, done=start_done, timeout=settings.timeout)
    stopped = "done"
    try:
        for _ in range(2):  # a restored experiment first, then (if budget remains) a fresh one
            remaining = None if budget is None else budget - finished_count(study)
            left_s = None if deadline is None else deadline - time.monotonic()
            if (remaining is not None and remaining <= 0) or (left_s is not None and left_s <= 0):
                stopped = "budget" if remaining is not None and remaining <= 0 else "timeout"
                break
            exp, restore = _experiment(run_dir)
            if restore:
                progress.note(f"restoring the Ray Tune experiment {exp.name} (its driver stopped before finishing)")
                tuner = tune.Tuner.restore(str(exp), trainable, resume_unfinished=True, restart_errored=True)
            else:
                searcher = StudySearcher(
                    space=_DefineByRun(resolved),
                    metric=list(prep.objectives.names), mode=["min", "min"], sampler=study.sampler,
                    study_name=settings.name, storage=study._storage, storage_spec=prep.handle.storage_spec,
                    run_dir=str(run_dir),
                )
                tuner = tune.Tuner(
                    trainable,
                    param_space={},
                    tune_config=tune.TuneConfig(
                        search_alg=searcher, num_samples=remaining if remaining is not None else -1,
                        max_concurrent_trials=settings.workers, reuse_actors=True,
                        time_budget_s=left_s, trial_dirname_creator=_trial_dirname,
                    ),
                    run_config=tune.RunConfig(
                        name=exp.name, storage_path=str(exp.parent),
                        failure_config=tune.FailureConfig(max_failures=_MAX_FAILURES), verbose=0,
                        callbacks=[_TrialEvents()],
                    ),
                )
            tuner.fit()
            running = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                       if t.user_attrs.get("session") == prep.session]
            if running:  # Tune stopped early (Ctrl-C): the experiment stays restorable
                stopped = "interrupted"
                break
            (exp / FINISHED_MARK).write_text("done\n", encoding="utf-8")
    finally:
        _DRIVER.update(progress=None, study=None, tune_trials={})
        if started_ray:
            ray.shutdown()
        progress.end()
    prep.evaluator = Evaluator(evaluator_config)
    if stopped == "done":
        stopped = "budget" if budget is not None and finished_count(study) >= budget else "timeout"
    evaluated = sum(1 for t in study.get_trials(deepcopy=False)
                    if t.user_attrs.get("session") == prep.session and t.state.is_finished()
                    and "duplicate_of" not in t.user_attrs)
    return LoopResult(evaluated=evaluated, stopped=stopped)
