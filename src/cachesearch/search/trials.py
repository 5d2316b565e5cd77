"""Reading a study's trials: what counts toward the budget, orphaned RUNNING trials, full compute and the Pareto
front as the export writes it."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "FULL_COMPUTE",
    "budget_counts",
    "counts_toward_budget",
    "dominates",
    "finished_count",
    "front_size",
    "is_full_compute",
    "pareto_trials",
    "recover_orphans",
]


def counts_toward_budget(trial: Any) -> bool:
    """Finished trials count; trials failed only because their process died (and were re-queued) do not."""
    return trial.state.is_finished() and not trial.user_attrs.get("requeued")


def finished_count(study: Any) -> int:
    """Number of finished trials that count toward ``--trials``."""
    return sum(1 for t in study.get_trials(deepcopy=False) if counts_toward_budget(t))


def budget_counts(study: Any) -> tuple[int, int]:
    """``(finished trials that count toward --trials, running trials)`` from one read of the study.

    One read, not two: in a shared study another process's trial can finish between two reads, and a process
    that counted it neither finished nor running would ask one trial too many after the others had stopped and
    exported without it.
    """
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    return (sum(1 for t in trials if counts_toward_budget(t)), sum(1 for t in trials if t.state == TrialState.RUNNING))


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_orphans(study: Any, *, run_dir: Path, keep: Sequence[int] = ()) -> list[int]:
    """Fail RUNNING trials whose process died and re-enqueue their parameters; returns their numbers.

    A killed worker leaves its trial RUNNING forever (Optuna heartbeats exist only for RDB storages inside
    ``optimize()``). Call this while holding :func:`~.storage.run_lock`. A RUNNING trial is an orphan when it was
    started for this run directory on this host (the lock proves its driver is gone), or on this host by a process
    that is no longer alive, or carries no runner information. Trials of other hosts, of live processes of
    other run directories, and those in ``keep`` (about to be resumed by Ray Tune) are left alone. The orphan
    becomes FAIL with ``reason`` and ``requeued: true`` (it does not count toward the budget), and its
    parameters are enqueued so the candidate is evaluated once, by the resumed run. In a shared RDB study
    (:mod:`.shared`) trials without runner information belong to a process that just asked them, and trials of
    other hosts are failed by the heartbeat keeper of any live process once they go stale.
    """
    from optuna.trial import TrialState

    from .heartbeat import requeue
    from .provenance import run_dir_id
    from .rdb import is_shared

    host = socket.gethostname()
    here = run_dir_id(run_dir)
    shared = is_shared(study._storage)
    orphans: list[int] = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.number in keep:
            continue
        t_host, pid = t.user_attrs.get("host"), t.user_attrs.get("pid")
        if t_host is None and shared:
            continue  # just asked by another process of a shared study; heartbeats catch it if it dies
        if t_host is not None and t_host != host:
            continue
        if t_host is not None and t.user_attrs.get("run_dir") != here and _pid_alive(pid) and pid != os.getpid():
            continue
        if requeue(study, t, "orphaned: the process running it died before it finished; re-enqueued"):
            orphans.append(t.number)
    return orphans


FULL_COMPUTE = 1.0 - 1e-9
"""A trial whose cost (or latency) ratio is at least this runs everything: the reference itself, on the front at
zero loss but no schedule worth exporting; counts, plots and exports leave it out alike."""


def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """Whether point ``a`` (loss, cost) dominates ``b``: no worse in both, and not the same point."""
    return a[0] <= b[0] and a[1] <= b[1] and tuple(a) != tuple(b)


def is_full_compute(trial: Any) -> bool:
    """Whether a finished trial costs as much as full compute (see :data:`FULL_COMPUTE`)."""
    return trial.values is not None and trial.values[1] >= FULL_COMPUTE


def front_size(study: Any) -> int:
    """Schedules on the front as the export will write them: :func:`pareto_trials` without full compute."""
    return sum(not is_full_compute(t) for t in pareto_trials(study))


def pareto_trials(study: Any) -> list[Any]:
    """Pareto-optimal finished trials (feasible ones when constrained), one per distinct compiled mask and one per
    distinct point (objective values).

    Uses ``study.best_trials``. Duplicates are PRUNED trials (not in it); studies written before that recorded
    them as COMPLETE copies marked ``duplicate_of``: those, and any trial sharing an earlier one's mask, are
    dropped in favour of the first evaluated one. So is a trial whose objective values equal an earlier front
    trial's exactly: different parameters that ran the same computation (a runtime cache's thresholds that all
    skip the same calls on the train images) — the search cannot tell them apart, and validating each copy would
    multiply the export's held-out work (a 600-trial TPE run had 119 front trials on 27 points).
    """
    seen: set[str] = set()
    points: set[tuple[float, ...]] = set()
    out = []
    for t in sorted(study.best_trials, key=lambda t: t.number):
        key, point = t.user_attrs.get("mask_key"), tuple(t.values)
        if "duplicate_of" in t.user_attrs or key in seen or point in points:
            continue
        if key:
            seen.add(key)
        points.add(point)
        out.append(t)
    return sorted(out, key=lambda t: (t.values[1], t.values[0]))
