"""A study shared by many processes or hosts in one RDB (PostgreSQL): retries, heartbeats, claims.

* **Retries** (:class:`RetryingStorage`): every storage call that fails because the database is unreachable
  (server restarted, network blip) is retried with backoff for up to ``CACHESEARCH_DB_RETRY`` seconds (default
  600), then the run stops with a :class:`~.settings.SearchError` that says how to resume. Connections are
  checked before use (``pool_pre_ping``), so a restarted server costs one reconnect, not an error.
* **Heartbeats** (:class:`Keeper`): while a trial runs, a thread of its process records Optuna's RDB heartbeat
  every ``interval`` seconds; the same thread fails the *stale* RUNNING trials of the study (no heartbeat for
  ``grace`` seconds: their process was killed or its host lost) and re-enqueues their parameters, so a killed
  process's trial ends FAIL (``requeued``) within ``grace + interval`` seconds of its last heartbeat while any
  other process of the study is alive. ``CACHESEARCH_HEARTBEAT=interval:grace`` (default ``10:40``). After
  a storage outage a process waits ``grace`` seconds before failing anything (live processes beat again first).
* **Claims** (:class:`Claims`): a table ``cachesearch_claims`` in the study's database whose primary key is
  (study, key); an INSERT wins or fails atomically. A process claims a compiled mask before evaluating it, so
  two processes never evaluate one mask: the loser waits for the winner's trial and records a duplicate of it
  (``duplicate_of``), exactly as one process does with a mask it evaluated before; if the winner's trial
  fails (its process died, or the evaluation failed), the claim is taken over (an UPDATE on the old holder) and
  evaluated again. Claims also elect the one process that enqueues the baselines and give each process a worker
  index that varies its sampler seed (worker 0 samples as a single process would).

The journal file storage (one host, one driver per run directory under ``run_lock``) needs none of this.
"""

from __future__ import annotations

from .claims import CLAIMS_TABLE, Claims
from .heartbeat import Keeper, fail_stale, requeue
from .rdb import RetryingStorage, heartbeat_settings, is_shared, open_rdb, retry_seconds, with_retry

# One module per job (.rdb: retries and the storage; .heartbeat: heartbeats and re-queueing; .claims); the names
# stay importable from here.
__all__ = [
    "CLAIMS_TABLE",
    "Claims",
    "Keeper",
    "RetryingStorage",
    "fail_stale",
    "heartbeat_settings",
    "is_shared",
    "open_rdb",
    "requeue",
    "retry_seconds",
    "with_retry",
]
