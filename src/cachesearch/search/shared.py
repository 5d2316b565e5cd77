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

import contextlib
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from .attrs import baseline_attrs
from .settings import SearchError

__all__ = [
    "Claims",
    "Keeper",
    "RetryingStorage",
    "heartbeat_settings",
    "is_shared",
    "open_rdb",
    "requeue",
    "retry_seconds",
]

CLAIMS_TABLE = "cachesearch_claims"


def heartbeat_settings() -> tuple[int, int]:
    """``(interval, grace)`` in seconds from ``CACHESEARCH_HEARTBEAT=interval:grace`` (default 10:40)."""
    text = os.environ.get("CACHESEARCH_HEARTBEAT", "10:40")
    try:
        parts = [int(p) for p in text.split(":")]
        interval = parts[0]
        grace = parts[1] if len(parts) > 1 else 4 * interval
    except (ValueError, IndexError):
        raise SearchError(f"CACHESEARCH_HEARTBEAT: expected 'interval:grace' in whole seconds, got {text!r}") from None
    if interval < 1 or grace <= interval:
        raise SearchError(f"CACHESEARCH_HEARTBEAT: expected interval >= 1 and grace > interval, got {text!r}")
    return interval, grace


def retry_seconds() -> float:
    """How long a storage call is retried while the database is unreachable (``CACHESEARCH_DB_RETRY``)."""
    return float(os.environ.get("CACHESEARCH_DB_RETRY", "600"))


def _transient(e: BaseException) -> bool:
    """Whether ``e`` means the database could not be reached (vs. a real error, which is not retried)."""
    import sqlalchemy.exc as sa_exc

    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (sa_exc.OperationalError, sa_exc.InterfaceError)):
            return True
        if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
            return True
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    return False


class _Health:
    """When this process last had an unreachable database (shared by its storage and its keeper)."""

    def __init__(self) -> None:
        self.last_error: float | None = None
        self.since = time.monotonic()  # connected since

    def failed(self) -> None:
        self.last_error = time.monotonic()

    def ok(self) -> None:
        if self.last_error is not None and self.last_error >= self.since:
            self.since = time.monotonic()


def with_retry(fn: Callable[[], Any], what: str, health: _Health | None = None, *, first_try: list[bool] | None = None
               ) -> Any:
    """Call ``fn`` until it does not fail with an unreachable database, for up to :func:`retry_seconds`."""
    limit = retry_seconds()
    deadline = time.monotonic() + limit
    delay = 0.2
    attempt = 0
    while True:
        try:
            if first_try is not None:
                first_try[0] = attempt == 0
            out = fn()
        except Exception as e:
            if not _transient(e):
                raise
            if health is not None:
                health.failed()
            if time.monotonic() + delay > deadline:
                raise SearchError(
                    f"the study database was unreachable for {limit:.0f} s ({what}: {type(e).__name__}: "
                    f"{str(e).splitlines()[0][:200]}); the run stopped. Finished trials are stored: rerun the same "
                    f"`cachesearch run --name …` once the database is back to resume"
                ) from e
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            attempt += 1
            continue
        if health is not None:
            health.ok()
        return out


def _retrying_method(name: str) -> Callable[..., Any]:
    def method(self: RetryingStorage, *args: Any, **kwargs: Any) -> Any:
        import optuna

        target = getattr(self._inner, name)
        first = [True]
        try:
            return with_retry(lambda: target(*args, **kwargs), name, self._health, first_try=first)
        except optuna.exceptions.UpdateFinishedTrialError:
            # a retried state change whose first attempt was committed before the connection dropped
            if name == "set_trial_state_values" and not first[0]:
                state = kwargs.get("state", args[1] if len(args) > 1 else None)
                if self._inner.get_trial(args[0] if args else kwargs["trial_id"]).state == state:
                    return True
            raise

    method.__name__ = name
    return method


def _make_retrying_class() -> type:
    from optuna.storages import BaseStorage
    from optuna.storages._heartbeat import BaseHeartbeat

    names = {n for base in (BaseStorage, BaseHeartbeat) for n in dir(base)
             if callable(getattr(base, n)) and (not n.startswith("_") or n == "_get_stale_trial_ids")}
    ns: dict[str, Any] = {n: _retrying_method(n) for n in sorted(names)}

    def __init__(self: Any, inner: Any, health: _Health | None = None) -> None:  # noqa: N807
        self._inner = inner
        self._health = health or _Health()

    def backend(self: Any) -> Any:
        """The RDBStorage underneath (its ``engine``)."""
        inner = self._inner
        return getattr(inner, "_backend", inner)

    def __reduce__(self: Any) -> tuple[Any, tuple[str]]:  # noqa: N807 - pickled (Ray Tune state): reopened by URL
        return open_rdb, (self.backend.url,)

    ns.update(__init__=__init__, __reduce__=__reduce__, backend=property(backend), __doc__=(
        "An Optuna storage that retries calls failing with an unreachable database (see the module docs)."))
    return type("RetryingStorage", (BaseStorage, BaseHeartbeat), ns)


_RETRYING: type | None = None


def RetryingStorage(inner: Any, health: _Health | None = None) -> Any:  # noqa: N802 - a class, built lazily
    """Wrap an Optuna storage (``_CachedStorage(RDBStorage)``) so unreachable-database errors are retried."""
    global _RETRYING
    if _RETRYING is None:
        _RETRYING = _make_retrying_class()
    return _RETRYING(inner, health)


def open_rdb(url: str) -> Any:
    """An RDB storage for ``url`` with heartbeats, connection checks and retries."""
    import optuna
    from optuna.storages._cached_storage import _CachedStorage

    interval, grace = heartbeat_settings()
    health = _Health()
    # cachesearch records heartbeats itself (Keeper) around ask/tell; Optuna warns outside optimize()
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # not retried: a server that is not there when a run starts is a wrong URL more often than a restart
        rdb = optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, heartbeat_interval=interval,
                                         grace_period=grace)
    return RetryingStorage(_CachedStorage(rdb), health)


def is_shared(storage: Any) -> bool:
    """Whether ``storage`` is a cachesearch RDB storage (heartbeats, claims, retries)."""
    return _RETRYING is not None and isinstance(storage, _RETRYING)


# -- re-queueing -------------------------------------------------------------------------------------------
def requeue(study: Any, trial: Any, reason: str) -> bool:
    """Fail a RUNNING trial with ``reason`` and ``requeued: true`` and enqueue its parameters again (the
    candidate runs once more; the failed trial does not count toward the budget). Returns False when another
    process finished or failed it first (then nothing is enqueued)."""
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
    study.enqueue_trial(params, user_attrs={"requeued_from": trial.number, **baseline_attrs(trial.user_attrs)})
    return True


def fail_stale(study: Any, health: _Health | None = None) -> list[int]:
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


# -- claims ------------------------------------------------------------------------------------------------
class Claims:
    """Atomic first-come claims on keys of one study, in the study's database (a no-op elsewhere)."""

    def __init__(self, study: Any) -> None:
        self.study_name = study.study_name
        storage = study._storage
        self.enabled = is_shared(storage)
        self.health = storage._health if self.enabled else None
        if not self.enabled:
            return
        import sqlalchemy as sa

        self.engine = storage.backend.engine
        meta = sa.MetaData()
        self.table = sa.Table(CLAIMS_TABLE, meta, sa.Column("study", sa.String(512), primary_key=True),
                              sa.Column("key", sa.String(128), primary_key=True),
                              sa.Column("holder", sa.Integer, nullable=False))

        def create() -> None:
            try:
                meta.create_all(self.engine, checkfirst=True)
            except sa.exc.IntegrityError:  # created concurrently (PostgreSQL's pg_type race)
                pass
            except sa.exc.ProgrammingError as e:
                if "already exists" not in str(e):
                    raise

        with_retry(create, "create claims table", self.health)

    def claim(self, key: str, holder: int) -> int | None:
        """Claim ``key`` for ``holder``: None when it is ours now (or was already), else the current holder."""
        import sqlalchemy as sa

        t = self.table

        def attempt() -> int | None:
            with self.engine.begin() as conn:
                try:
                    with conn.begin_nested():
                        conn.execute(t.insert().values(study=self.study_name, key=key, holder=holder))
                    return None
                except sa.exc.IntegrityError:
                    row = conn.execute(sa.select(t.c.holder).where(t.c.study == self.study_name,
                                                                   t.c.key == key)).first()
            if row is None:  # released in between: try again
                return attempt()
            return None if row[0] == holder else int(row[0])

        return with_retry(attempt, "claim", self.health)

    def take_over(self, key: str, old: int, new: int) -> bool:
        """Move ``key`` from ``old`` to ``new`` (atomic: False if someone else moved it first)."""
        t = self.table

        def attempt() -> bool:
            with self.engine.begin() as conn:
                res = conn.execute(t.update().where(t.c.study == self.study_name, t.c.key == key, t.c.holder == old)
                                   .values(holder=new))
                return res.rowcount == 1

        return bool(with_retry(attempt, "claim take-over", self.health))

    def first(self, key: str) -> bool:
        """Whether this process is the first ever to claim ``key`` (an election)."""
        return self.claim(key, -int.from_bytes(os.urandom(3), "little") - 1) is None

    def index(self, prefix: str) -> int:
        """The first free ``prefix:N`` key, claimed (a worker index: 0 for the first process)."""
        holder = -int.from_bytes(os.urandom(3), "little") - 1  # negative: never a trial number
        n = 0
        while self.claim(f"{prefix}:{n}", holder) is not None:
            n += 1
        return n
