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
import time
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from ...evaluate import Evaluator
from ..claims import Claims
from ..crossing import Crossing
from ..provenance import runner_attrs
from ..rdb import is_shared
from ..trials import finished_count
from .base import FINISHED_MARK, RAY_DIR, LoopResult, Prepared, Progress
from .ray_cluster import STARTED, init_ray
from .ray_events import _DRIVER, _MAX_FAILURES, _TrialEvents
from .ray_searcher import StudySearcher, _DefineByRun  # noqa: F401 - re-exported (see below)
from .ray_trainable import _RESULT_KEY, _trainable  # noqa: F401 - re-exported (see below)
from .worker import worker_setup

# The worker side is .ray_trainable, Tune's failures and the driver's state .ray_events, the searcher
# .ray_searcher. Their names stay importable from here: tests import them, and experiments pickled by Ray Tune
# (tuner.pkl, searcher checkpoints) name _DefineByRun, StudySearcher and _TrialEvents in this module.
__all__ = ["StudySearcher", "run_ray"]


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
                   study=study, tune_trials={},
                   crossing=Crossing.of(prep, Claims(study) if is_shared(study._storage) else None))

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
        _DRIVER.update(progress=None, study=None, tune_trials={}, crossing=None)
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
