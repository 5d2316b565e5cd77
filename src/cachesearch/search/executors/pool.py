"""The local executor with ``--workers N > 1``: this process asks and tells, N worker processes evaluate.

One torch process on a small model leaves most of a CPU idle (the per-call work is short kernels and Python
between them, which extra intra-op threads do not speed up); N single-threaded processes evaluating N
candidates at once do use N cores. The driver owns the study exactly as the in-process loop does (ask, the
space's suggestions, tell, heartbeats and mask claims of a shared study) and keeps its own model only to compile
candidates, so it can tell duplicates (of evaluated masks, or of a mask a worker is evaluating right now)
without sending them out.

Workers are ``spawn``ed (no CUDA or thread-pool state inherited), ignore Ctrl-C (the driver decides: the
first one stops asking and lets running trials finish, a second fails and re-enqueues them) and build their
evaluator once; the train references come from the cache the driver filled. A ``cachesearch run`` starts them
before it prepares (:func:`start_pool`): their start-up (imports, model, metric: seconds) overlaps the driver's
profile instead of the search's time budget, and the export's held-out validation runs on the same processes.
A worker that dies (killed, out of memory) fails its trial with the reason and re-enqueues it; the pool is
restarted.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..attrs import baseline_attrs
from ..crossing import Crossing
from ..masks import KnownMasks, mask_key
from ..objective import evaluate_candidate
from ..outcome import Outcome, result_attr
from ..provenance import runner_attrs
from ..trials import budget_counts, finished_count, front_size
from .base import LoopResult, Prepared, Progress, record_outcome
from .local import WAIT_FOR_OTHERS_S, StopFlag, _abort_trial, _claimer, _signals, loop_state
from .worker import WORKER, WorkerSetup, prebuilt_key, quiet_worker, worker_setup, worker_state

if TYPE_CHECKING:
    import optuna

    from ...evaluate import EvalConfig, EvalResult
    from ...schedule import Policy, Schedule
    from ..validation import Job, Runner

__all__ = ["heldout_runner", "run_pool", "start_pool"]


def _exit_with_driver(interval_s: float = 1.0) -> None:
    """Exit this worker once the driver that spawned it is gone (a SIGKILLed driver cannot shut its pool down, and
    an idle worker would otherwise wait for work forever, holding its model's memory)."""
    import os
    import threading

    driver = os.getppid()

    def watch() -> None:
        while os.getppid() == driver:
            time.sleep(interval_s)
        os._exit(1)

    threading.Thread(target=watch, name="cachesearch-driver-watch", daemon=True).start()


def _init_worker(config: EvalConfig | None) -> None:
    """Process-pool initializer: exit with the driver, ignore Ctrl-C, one torch thread, and build the evaluator of
    ``config`` now (the first trial's :func:`worker_state` takes it over)."""
    import torch

    _exit_with_driver()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    if config is None:
        return
    try:
        from ...evaluate import Evaluator

        quiet_worker()
        WORKER[prebuilt_key(config)] = Evaluator(config)
    except Exception:  # noqa: BLE001 - the first trial builds it again and records the error as its reason
        pass


def _started() -> int:
    return 0


def start_pool(workers: int, config: EvalConfig | None) -> ProcessPoolExecutor:
    """``workers`` worker processes, started now; each builds the evaluator of ``config`` as it starts (``None``:
    at its first trial). The pool spawns a process per task while none is idle, so one no-op task per worker
    starts them all."""
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(config,))
    for _ in range(workers):
        pool.submit(_started)
    return pool


def _evaluate(setup: WorkerSetup, policy: Policy, number: int, entries: dict[str, Any], screen: bool) -> str:
    """Evaluate one candidate in a worker; returns the :class:`Outcome` as JSON."""
    import os

    ev, _ = worker_state(setup)
    known = KnownMasks(entries=dict(entries))
    outcome = evaluate_candidate(ev, policy, setup.objectives, known=known, number=number,
                                 study=setup.study_name, screening=setup.screening if screen else None)
    outcome.user_attrs["worker"] = {"host": os.uname().nodename, "pid": os.getpid(), "loads": WORKER.get("loads", 0)}
    return outcome.to_json()


@dataclass
class _Task:
    trial: optuna.Trial
    policy: Policy
    key: str | None


def _evaluate_heldout(setup: WorkerSetup, schedule: Schedule, first: int, stop: int, measure: bool) -> str:
    """Score one held-out range of a schedule in a worker; returns the result as JSON."""
    import json

    ev, _ = worker_state(setup)
    return json.dumps(result_attr(ev.evaluate(schedule, split="heldout", measure=measure, images=slice(first, stop))))


@contextlib.contextmanager
def heldout_runner(prep: Prepared, workers: int) -> Iterator[Runner]:
    """A :data:`~..validation.Runner` that scores held-out ranges on ``workers`` worker processes (the export of
    a run with ``--workers N``: its held-out validation is as parallel as its search): the run's own
    (``prep.pool``), else a pool started here. A worker that dies leaves its jobs to this process."""
    import json

    from ..validation import result_from_dict

    setup = worker_setup(prep, threads=1)
    owned = prep.pool is None
    pool = start_pool(workers, setup.eval_config) if owned else prep.pool

    def run(jobs: Sequence[Job]) -> list[EvalResult]:
        futures = [pool.submit(_evaluate_heldout, setup, s, a, b, m) for s, a, b, m in jobs]
        out = []
        for (s, a, b, m), fut in zip(jobs, futures, strict=True):
            try:
                out.append(result_from_dict(json.loads(fut.result())))
            except BrokenProcessPool:
                out.append(prep.ev.evaluate(s, split="heldout", measure=m, images=slice(a, b)))
        return out

    try:
        yield run
    finally:
        if owned:
            pool.shutdown(wait=True, cancel_futures=True)


def run_pool(prep: Prepared, progress: Progress, *, flag: StopFlag | None = None) -> LoopResult:
    """Run trials on ``--workers`` local processes until the budget, the timeout or Ctrl-C (as
    :func:`~.local.run_local`: the timeout stops asking; running trials finish). The processes are the run's own
    (``prep.pool``, started before it prepared; left running for the export), else a pool started here."""
    from optuna.exceptions import UpdateFinishedTrialError

    study, settings = prep.study, prep.settings
    workers = settings.workers
    flag = flag or StopFlag()
    known, keeper, claims = loop_state(prep, progress)
    crossing = Crossing.of(prep, claims)
    shared = keeper.enabled
    setup = worker_setup(prep, threads=1)
    done = finished_count(study)
    budget = settings.trials
    deadline = time.monotonic() + settings.timeout if settings.timeout else None
    progress.start(total=budget, done=done, timeout=settings.timeout)
    runner = runner_attrs(prep.session, prep.run_dir)
    running: dict[Future[str], _Task] = {}
    parked: list[_Task] = []  # same mask as a running trial: recorded as its duplicate once it is done
    evaluated = 0
    stopped = "done"

    def record(task: _Task, outcome: Outcome) -> None:
        nonlocal done, evaluated
        keeper.stop(task.trial._trial_id)
        try:
            record_outcome(study, task.trial, outcome)
        except UpdateFinishedTrialError:
            progress.note(f"trial {task.trial.number} was failed by another process (no heartbeat within the "
                          f"grace period) while this one ran it; its re-enqueued copy runs it again")
            return
        known.add(task.trial.number, outcome)
        done += 1
        evaluated += 0 if "duplicate_of" in outcome.user_attrs else 1
        progress.trial(number=task.trial.number, done=done, front=front_size(study), outcome=outcome)

    def in_driver(task: _Task) -> None:
        """A duplicate or a candidate that fails before any image: settled here without a worker."""
        record(task, evaluate_candidate(prep.ev, task.policy, prep.objectives, known=known,
                                        number=task.trial.number, study=settings.name))

    def ask() -> _Task | None:
        crossing()
        trial = study.ask()
        keeper.start(trial._trial_id)
        for k, v in runner.items():
            trial.set_user_attr(k, v)
        try:
            policy = prep.space.suggest(trial)
        except Exception as e:  # noqa: BLE001 - a parameter combination the policy refuses
            record(_Task(trial, None, None), Outcome(values=None, reason=f"policy: {type(e).__name__}: {e}",  # type: ignore[arg-type]
                                                     user_attrs={"params_error": str(e)}))
            return None
        try:
            key = mask_key(prep.ev.compile(policy, name=f"{settings.name}-t{trial.number}", fit=False))
        except Exception:  # noqa: BLE001 - evaluate_candidate records the compile error with its reason
            key = None
        return _Task(trial, policy, key)

    def submit(task: _Task) -> None:
        nonlocal pool
        if claims is not None and task.key is not None:
            _claimer(prep, claims, known, task.trial)(task.key)
        if task.key is None or task.key in known.entries:
            in_driver(task)
            return
        screen = not baseline_attrs(task.trial.user_attrs)  # baselines get full values for the report
        args = (_evaluate, setup, task.policy, task.trial.number, dict(known.entries), screen)
        try:
            fut = pool.submit(*args)
        except BrokenProcessPool:  # a worker died while idle: its running peers are lost too; start afresh
            restart()
            fut = pool.submit(*args)
        running[fut] = task

    def restart() -> None:
        nonlocal pool
        pool.shutdown(wait=False, cancel_futures=True)
        for t in running.values():
            lost(t)
        running.clear()
        pool = start_pool(workers, setup.eval_config)
        if not owned:
            prep.pool = pool  # the export's held-out validation uses the live one

    def lost(task: _Task) -> None:
        keeper.stop(task.trial._trial_id)
        _abort_trial(prep, task.trial, reason="its worker process died before it finished; re-enqueued")
        progress.note(f"trial {task.trial.number}: its worker process died; re-enqueued")

    def counts() -> tuple[int, int]:
        """(finished, pending) toward the budget: the shared study's, or this process's own."""
        return budget_counts(study) if shared else (done, len(running) + len(parked))

    owned = prep.pool is None
    pool = start_pool(workers, setup.eval_config) if owned else prep.pool
    waiting_since: float | None = None
    with _signals(flag, progress), keeper:
        try:
            while True:
                mine = len(running) + len(parked)
                done, pending = counts()
                over_time = deadline is not None and time.monotonic() >= deadline
                over_budget = budget is not None and done + pending >= budget
                if flag.requested or over_time or over_budget:
                    if not mine:
                        if over_budget and shared and not flag.requested and not over_time and pending:
                            waiting_since = waiting_since or time.monotonic()
                            if time.monotonic() - waiting_since <= WAIT_FOR_OTHERS_S:
                                time.sleep(min(1.0, keeper.interval / 2))  # other processes' trials still run
                                continue
                            progress.note("stopped waiting for other processes' running trials")
                        stopped = "interrupted" if flag.requested else "timeout" if over_time else "budget"
                        break
                else:
                    waiting_since = None
                    while len(running) < workers and not flag.requested:
                        done, pending = counts()
                        if budget is not None and done + pending >= budget:
                            break
                        task = ask()
                        if task is None:
                            continue
                        if task.key is not None and task.key in {t.key for t in running.values()}:
                            parked.append(task)
                        else:
                            submit(task)
                if not running:
                    for task in parked:
                        submit(task)
                    parked.clear()
                    if not running:
                        continue
                finished, _ = wait(list(running), timeout=1.0, return_when=FIRST_COMPLETED)
                broken = False
                for fut in finished:
                    task = running.pop(fut)
                    try:
                        outcome = Outcome.from_json(fut.result())
                    except BrokenProcessPool:
                        broken = True
                        lost(task)
                        continue
                    except Exception as e:  # noqa: BLE001 - an error outside evaluate_candidate's own handling
                        outcome = Outcome(values=None, reason=f"worker: {type(e).__name__}: {e}")
                    record(task, outcome)
                    same = [t for t in parked if t.key == task.key]
                    for other in same:
                        parked.remove(other)
                    if same and task.key not in known.entries:  # it failed: the next copy is evaluated anew
                        submit(same[0])
                        parked.extend(same[1:])
                    else:
                        for other in same:
                            in_driver(other)
                if broken:
                    restart()
        except KeyboardInterrupt:
            stopped = "interrupted"
            for task in [*running.values(), *parked]:
                keeper.stop(task.trial._trial_id)
                _abort_trial(prep, task.trial)
            running.clear()
            parked.clear()
        finally:
            if owned:
                pool.shutdown(wait=False, cancel_futures=True)
    progress.end()
    return LoopResult(evaluated=evaluated, stopped=stopped)
