"""The local executor: an ask/tell loop in this process on one device.

Every finished trial is written to the study storage before the next one starts (the journal file is
fsync'ed), so a killed process loses at most the trial it was running; that trial is recovered on resume
(:func:`~cachesearch.search.study.recover_orphans`). Ctrl-C (SIGINT) asks the loop to stop after the current
trial; a second Ctrl-C (or SIGTERM) aborts the current trial, which is marked failed and re-enqueued.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..objective import KnownMasks, Outcome, evaluate_candidate, runner_attrs
from ..study import baseline_attrs, finished_count, pareto_trials
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


def _abort_trial(prep: Prepared, trial: optuna.Trial) -> None:
    """Fail an interrupted trial and re-enqueue its parameters so the resumed run evaluates it."""
    from optuna.trial import TrialState

    study = prep.study
    params = dict(trial.params)
    trial.set_user_attr("reason", "interrupted before it finished; re-enqueued")
    trial.set_user_attr("requeued", True)
    marks = baseline_attrs(trial.user_attrs)
    study.tell(trial, state=TrialState.FAIL)
    study.enqueue_trial(params, user_attrs={"requeued_from": trial.number, **marks})


def run_local(prep: Prepared, progress: Progress, *, flag: StopFlag | None = None) -> LoopResult:
    """Run trials until ``--trials`` finished trials exist in the study, ``--timeout`` passes, or Ctrl-C."""
    study, settings = prep.study, prep.settings
    flag = flag or StopFlag()
    known = KnownMasks()
    for t in study.get_trials(deepcopy=False):
        known.add_trial(t)
    done = finished_count(study)
    budget = settings.trials
    deadline = time.monotonic() + settings.timeout if settings.timeout else None
    progress.start(total=budget, done=done, timeout=settings.timeout)
    evaluated = 0
    stopped = "done"
    runner = runner_attrs(prep.session, prep.run_dir)
    with _signals(flag, progress):
        try:
            while True:
                if flag.requested:
                    stopped = "interrupted"
                    break
                if budget is not None and done >= budget:
                    stopped = "budget"
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    stopped = "timeout"
                    break
                trial = study.ask()
                try:
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
                        )
                except KeyboardInterrupt:
                    _abort_trial(prep, trial)
                    stopped = "interrupted"
                    break
                record_outcome(study, trial, outcome)
                known.add(trial.number, outcome)
                done += 1
                evaluated += 0 if "duplicate_of" in outcome.user_attrs else 1
                progress.trial(number=trial.number, done=done, front=len(pareto_trials(study)), outcome=outcome)
        except KeyboardInterrupt:  # between trials: nothing is running
            stopped = "interrupted"
    progress.end()
    return LoopResult(evaluated=evaluated, stopped=stopped)
