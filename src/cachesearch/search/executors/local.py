"""The local executor: an ask/tell loop in this process on one device.

Every finished trial is written to the study storage before the next one starts (the journal file is
fsync'ed), so a killed process loses at most the trial it was running; that trial is recovered on resume
(:func:`~cachesearch.search.study.recover_orphans`). Ctrl-C (SIGINT) asks the loop to stop after the current
trial; a second Ctrl-C (or SIGTERM) aborts the current trial, which is marked failed and re-enqueued.
With a shared RDB study (:mod:`..shared`) many such loops, on many hosts, work on one study: heartbeats fail a
killed process's trial, mask claims keep two processes from evaluating one mask.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..attrs import baseline_attrs
from ..claims import Claims
from ..crossing import Crossing
from ..heartbeat import Keeper
from ..masks import KnownMasks
from ..objective import evaluate_candidate
from ..outcome import Outcome
from ..provenance import runner_attrs
from ..trials import budget_counts, finished_count, front_size
from .base import LoopResult, Prepared, Progress, record_outcome

if TYPE_CHECKING:
    import optuna

__all__ = ["StopFlag", "run_local"]


class StopFlag:
    """Set by the first Ctrl-C; the loop stops after the current trial."""

    def __init__(self) -> None:
        self.requested = False
        self.signals = 0


@contextlib.contextmanager
def _signals(flag: StopFlag, progress: Progress) -> Iterator[None]:
    """First SIGINT: stop after the current trial. Second SIGINT or SIGTERM: abort now (KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_int(signum: int, frame: Any) -> None:
        flag.signals += 1
        if flag.signals == 1 and signum == signal.SIGINT:
            flag.requested = True
            progress.note("stopping after the current trial (Ctrl-C again to abort it; it will be re-run on resume)")
            return
        flag.requested = True
        raise KeyboardInterrupt

    old_int = signal.signal(signal.SIGINT, on_int)
    old_term = signal.signal(signal.SIGTERM, on_int)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def _abort_trial(prep: Prepared, trial: optuna.Trial,
                 reason: str = "interrupted before it finished; re-enqueued") -> None:
    """Fail an interrupted trial and re-enqueue its parameters so the resumed run evaluates it."""
    from optuna.trial import TrialState

    study = prep.study
    params = dict(trial.params)
    trial.set_user_attr("reason", reason)
    trial.set_user_attr("requeued", True)
    marks = baseline_attrs(trial.user_attrs)
    study.tell(trial, state=TrialState.FAIL)
    study.enqueue_trial(params, user_attrs={"requeued_from": trial.number, **marks})


def loop_state(prep: Prepared, progress: Progress) -> tuple[KnownMasks, Keeper, Claims | None]:
    """What a trial loop keeps: the evaluated masks so far, the heartbeat keeper and, in a shared study, the mask
    claims."""
    study = prep.study
    known = KnownMasks()
    for t in study.get_trials(deepcopy=False):
        known.add_trial(t)
    keeper = Keeper(study, on_stale=lambda numbers: progress.note(
        f"failed and re-enqueued trial(s) {', '.join(map(str, numbers))}: no heartbeat from their process"))
    return known, keeper, (Claims(study) if keeper.enabled else None)


def _claimer(prep: Prepared, claims: Claims, known: KnownMasks, trial: optuna.Trial) -> Callable[[str], None]:
    """``claim(key)`` for :func:`evaluate_candidate` in a shared study: returns when this trial holds the mask,
    or once the trial of another process that holds it completed (its result is then in ``known``)."""
    from optuna.trial import TrialState

    study = prep.study
    storage = study._storage

    def claim(key: str) -> None:
        holder = claims.claim(key, trial.number)
        while holder is not None:
            other = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study._study_id, holder))
            if other.state == TrialState.COMPLETE and other.user_attrs.get("mask_key") == key:
                known.add_trial(other)
                return
            if other.state.is_finished():  # failed (its process died, or the evaluation failed): ours now
                if claims.take_over(key, holder, trial.number):
                    return
                holder = claims.claim(key, trial.number)
                continue
            time.sleep(0.5)  # still running elsewhere; if its process died the keeper fails it within the grace

    return claim


WAIT_FOR_OTHERS_S = 3600.0
"""How long a process of a shared study that has reached the budget waits for other processes' running trials."""


def run_local(prep: Prepared, progress: Progress, *, flag: StopFlag | None = None) -> LoopResult:
    """Run trials until ``--trials`` finished trials exist in the study, ``--timeout`` passes, or Ctrl-C.

    In a shared study (:mod:`..shared`) the budget counts every process's trials; a process does not ask a new
    trial while finished + running trials reach the budget, and it ends only once no trial is running anywhere
    (stale ones are failed and re-enqueued by the heartbeat keeper), so every process exports the same front.
    """
    from optuna.exceptions import UpdateFinishedTrialError

    study, settings = prep.study, prep.settings
    flag = flag or StopFlag()
    known, keeper, claims = loop_state(prep, progress)
    crossing = Crossing.of(prep, claims)
    shared = keeper.enabled
    done = finished_count(study)
    budget = settings.trials
    deadline = time.monotonic() + settings.timeout if settings.timeout else None
    progress.start(total=budget, done=done, timeout=settings.timeout)
    evaluated = 0
    stopped = "done"
    waiting_since: float | None = None
    runner = runner_attrs(prep.session, prep.run_dir)
    with _signals(flag, progress), keeper:
        try:
            while True:
                if flag.requested:
                    stopped = "interrupted"
                    break
                others = 0
                if shared:
                    done, others = budget_counts(study)
                if deadline is not None and time.monotonic() >= deadline:
                    stopped = "timeout"
                    break
                if budget is not None and done + others >= budget:
                    if others == 0:
                        stopped = "budget"
                        break
                    waiting_since = waiting_since or time.monotonic()
                    if time.monotonic() - waiting_since > WAIT_FOR_OTHERS_S:
                        progress.note("stopped waiting for other processes' running trials")
                        stopped = "budget"
                        break
                    time.sleep(min(1.0, keeper.interval / 2))
                    continue
                waiting_since = None
                crossing()
                trial = study.ask()
                try:
                    with keeper.running(trial._trial_id):
                        for key, value in runner.items():
                            trial.set_user_attr(key, value)
                        try:
                            policy = prep.space.suggest(trial)
                        except Exception as e:  # noqa: BLE001 - a parameter combination the policy refuses
                            outcome = Outcome(values=None, reason=f"policy: {type(e).__name__}: {e}",
                                              user_attrs={"params_error": str(e)})
                        else:
                            outcome = evaluate_candidate(
                                prep.ev, policy, prep.objectives, known=known, number=trial.number,
                                study=settings.name,
                                screening=None if baseline_attrs(trial.user_attrs) else settings.screening,
                                claim=_claimer(prep, claims, known, trial) if claims is not None else None,
                            )
                except KeyboardInterrupt:
                    _abort_trial(prep, trial)
                    stopped = "interrupted"
                    break
                try:
                    record_outcome(study, trial, outcome)
                except UpdateFinishedTrialError:
                    progress.note(f"trial {trial.number} was failed by another process (no heartbeat within the "
                                  f"grace period) while this one ran it; its re-enqueued copy runs it again")
                    continue
                known.add(trial.number, outcome)
                done += 1
                evaluated += 0 if "duplicate_of" in outcome.user_attrs else 1
                progress.trial(number=trial.number, done=done, front=front_size(study), outcome=outcome)
        except KeyboardInterrupt:  # between trials: nothing is running
            stopped = "interrupted"
    progress.end()
    return LoopResult(evaluated=evaluated, stopped=stopped)
