"""Heartbeats of a shared study's running trials (:class:`Keeper`), and the re-queueing of trials whose process
died (:func:`requeue`; stale ones by heartbeat, :func:`fail_stale`). The overview: :mod:`.shared`."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .attrs import baseline_attrs
from .rdb import Health, heartbeat_settings, is_shared, with_retry

__all__ = ["Keeper", "fail_stale", "requeue"]


def requeue(study: Any, trial: Any, reason: str, extra: Mapping[str, Any] | None = None) -> bool:
    """Fail a RUNNING trial with ``reason`` and ``requeued: true`` and enqueue its parameters again (the
    candidate runs once more; the failed trial does not count toward the budget), the new trial carrying
    ``requeued_from``, ``extra`` and the baseline marks. Returns False when another process finished or failed
    it first (then nothing is enqueued)."""
    import optuna
    from optuna.trial import TrialState

    storage = study._storage
    params = dict(trial.system_attrs.get("fixed_params") or {})
    params.update(trial.params)
    try:
        storage.set_trial_user_attr(trial._trial_id, "reason", reason)
        storage.set_trial_user_attr(trial._trial_id, "requeued", True)
        if not storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    study.enqueue_trial(params, user_attrs={"requeued_from": trial.number, **(extra or {}),
                                            **baseline_attrs(trial.user_attrs)})
    return True


def fail_stale(study: Any, health: Health | None = None) -> list[int]:
    """Fail and re-enqueue the study's RUNNING trials whose heartbeat is older than the grace period (and those
    that never beat, started more than three grace periods ago); returns their numbers. Does nothing until
    this process has been connected for a grace period (after an outage, live processes beat again first)."""
    from optuna.trial import TrialState

    storage = study._storage
    if not is_shared(storage):
        return []
    _, grace = heartbeat_settings()
    if health is not None and time.monotonic() - health.since < grace:
        return []
    stale = set(storage._get_stale_trial_ids(study._study_id))
    now = time.time()
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        never_beat = (t._trial_id not in stale and t.datetime_start is not None
                      and now - t.datetime_start.timestamp() > 3 * grace and not _has_heartbeat(storage, t))
        if t._trial_id in stale or never_beat:
            why = "no heartbeat" if never_beat else f"no heartbeat for {grace} s"
            if requeue(study, t, f"stale: {why} (its process was killed or its host lost); re-enqueued"):
                out.append(t.number)
    return out


def _has_heartbeat(storage: Any, trial: Any) -> bool:
    from optuna.storages._rdb import models

    def q() -> bool:
        with storage.backend.scoped_session() as session:
            return models.TrialHeartbeatModel.where_trial_id(trial._trial_id, session) is not None

    return bool(with_retry(q, "heartbeat lookup"))


class Keeper:
    """A thread that records the heartbeat of this process's running trials (one, or one per pool worker)
    every ``interval`` seconds and fails stale trials of the study (see the module docs). A no-op for storages
    that are not shared."""

    def __init__(self, study: Any, on_stale: Callable[[list[int]], None] | None = None) -> None:
        self.study = study
        self.enabled = is_shared(study._storage)
        self.interval, self.grace = heartbeat_settings() if self.enabled else (0, 0)
        self.trial_ids: set[int] = set()
        self.on_stale = on_stale
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.errors = 0

    def beat(self) -> None:
        """Record the current trial's heartbeat now and fail stale trials (also called by the thread)."""
        if not self.enabled:
            return
        storage = self.study._storage
        with self._lock:
            for trial_id in sorted(self.trial_ids):
                storage.record_heartbeat(trial_id)
            stale = fail_stale(self.study, storage._health)
        if stale and self.on_stale is not None:
            self.on_stale(stale)

    @contextlib.contextmanager
    def running(self, trial_id: int) -> Iterator[None]:
        """Beat for ``trial_id`` while the block runs (the first beat before it starts)."""
        self.start(trial_id)
        try:
            yield
        finally:
            self.stop(trial_id)

    def start(self, trial_id: int) -> None:
        """Beat for ``trial_id`` from now on (the first beat at once)."""
        with self._lock:
            self.trial_ids.add(trial_id)
        if self.enabled:
            with_retry(lambda: self.study._storage.record_heartbeat(trial_id), "heartbeat")

    def stop(self, trial_id: int) -> None:
        """Stop beating for ``trial_id``."""
        with self._lock:
            self.trial_ids.discard(trial_id)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - the next beat retries; the main thread reports lasting outages
                self.errors += 1

    def __enter__(self) -> Keeper:
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="cachesearch-heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
