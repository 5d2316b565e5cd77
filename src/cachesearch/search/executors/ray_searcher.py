"""The Ray executor's searcher: an ``OptunaSearch`` on the run's study that asks trials, re-asks those whose worker
was lost, and records every outcome explicitly (see :mod:`.ray`)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import Trial, TrialState
from ray.tune.search.optuna import OptunaSearch

from ..heartbeat import requeue
from ..outcome import Outcome
from ..space import ResolvedSpace
from ..storage import open_storage
from ..study import make_sampler
from ..trials import finished_count, front_size, recover_orphans
from .base import record_outcome
from .ray_events import _DRIVER, _MAX_FAILURES, _error_summary, _error_text, _worker_lost
from .ray_trainable import _ID_KEY, _NUMBER_KEY, _RESULT_KEY

__all__ = ["StudySearcher"]


def _stamp_runner(trial: Trial) -> None:
    """Record this driver (host, pid, session, run folder) as the one running ``trial``."""
    for key, value in _DRIVER.get("runner", {}).items():
        trial.set_user_attr(key, value)


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
        kept = [t for k, t in self._ot_trials.items() if k not in self._completed_trials]
        orphans = recover_orphans(self._ot_study, run_dir=Path(self._run_dir), keep=[t.number for t in kept])
        self._adopt(kept)
        progress = _DRIVER.get("progress")
        if orphans and progress is not None:
            progress.note(f"recovered {len(orphans)} orphaned trial(s) after restoring the Ray experiment")

    def _adopt(self, trials: list[Trial]) -> None:
        """The trials Tune resumes run on this driver's workers now: they carry its runner information (as
        :meth:`suggest` stamps new ones), not the dead driver's, so that they count as this session's running
        trials (an interrupted resume stays restorable) and nobody takes them for orphans of a dead process."""
        storage = self._ot_study._storage
        for trial in trials:  # one the dead driver recorded after Tune's last checkpoint is reported, not run
            if storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
                _stamp_runner(trial)

    # -- asking and telling ------------------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        self._reopen()
        if trial_id not in self._ot_trials:  # re-enqueued trials (lost workers, orphans) first
            requeued = self._pop_requeued()
            if requeued is not None:
                self._ot_trials[trial_id] = requeued
        crossing = _DRIVER.get("crossing")
        if crossing is not None:
            crossing()
        config = super().suggest(trial_id)
        if config is None:
            return None
        ot_trial = self._ot_trials[trial_id]
        _stamp_runner(ot_trial)
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
            if not text:  # errored while PENDING for its retry: no new entry; the cause is the failure retried
                retries = self._ot_study._storage.get_trial(ot_trial._trial_id).user_attrs.get("ray_retries", [])
                text = str(retries[-1].get("error", "")) if retries else ""
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
        if lost > _MAX_FAILURES or not requeue(self._ot_study, frozen, f"worker lost: {cause}; re-enqueued",
                                               extra={"workers_lost": lost}):
            return False
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
