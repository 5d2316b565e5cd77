"""An RDB storage many processes can share (:func:`open_rdb`): every storage call retried with backoff while the
database is unreachable, connections checked before use, and Optuna's heartbeats configured (the overview:
:mod:`.shared`)."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from typing import Any

from .settings import SearchError

__all__ = ["Health", "RetryingStorage", "heartbeat_settings", "is_shared", "open_rdb", "retry_seconds", "with_retry"]


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


class Health:
    """When this process last had an unreachable database (shared by its storage and its keeper)."""

    def __init__(self) -> None:
        self.last_error: float | None = None
        self.since = time.monotonic()  # connected since

    def failed(self) -> None:
        self.last_error = time.monotonic()

    def ok(self) -> None:
        if self.last_error is not None and self.last_error >= self.since:
            self.since = time.monotonic()


def _longest_delay() -> float:
    """The longest wait between two tries: 5 s, or the heartbeat interval where that is shorter. A live process
    then beats again within an interval of the database's return, inside the grace the other processes allow
    after their own reconnection (with ``CACHESEARCH_HEARTBEAT=1:4`` a 5-s wait let them fail its live trial)."""
    try:
        return min(5.0, float(heartbeat_settings()[0]))
    except SearchError:  # a malformed setting is reported where the heartbeat starts, not here
        return 5.0


def with_retry(fn: Callable[[], Any], what: str, health: Health | None = None, *, first_try: list[bool] | None = None
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
            delay = min(delay * 2, _longest_delay())  # read on failures only: every storage call comes here
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

    def __init__(self: Any, inner: Any, health: Health | None = None) -> None:  # noqa: N807
        self._inner = inner
        self._health = health or Health()

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


def RetryingStorage(inner: Any, health: Health | None = None) -> Any:  # noqa: N802 - a class, built lazily
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
    health = Health()
    # cachesearch records heartbeats itself (Keeper) around ask/tell; Optuna warns outside optimize()
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # not retried: a server that is not there when a run starts is a wrong URL more often than a restart
        rdb = _created(lambda: optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True},
                                                          heartbeat_interval=interval, grace_period=grace))
    return RetryingStorage(_CachedStorage(rdb), health)


def _created(make: Callable[[], Any], tries: int = 5) -> Any:
    """``make()``, tried again where another process created Optuna's tables at the same moment: PostgreSQL
    then fails the slower ``CREATE TABLE`` with a unique violation on ``pg_type`` (or "already exists"); on the
    next try the tables are there and are not created again."""
    import sqlalchemy.exc as sa_exc

    for attempt in range(tries - 1):
        try:
            return make()
        except (sa_exc.IntegrityError, sa_exc.ProgrammingError) as e:
            if not (isinstance(e, sa_exc.IntegrityError) or "already exists" in str(e)):
                raise
            time.sleep(0.1 * (attempt + 1))
    return make()


def is_shared(storage: Any) -> bool:
    """Whether ``storage`` is a cachesearch RDB storage (heartbeats, claims, retries)."""
    return _RETRYING is not None and isinstance(storage, _RETRYING)
