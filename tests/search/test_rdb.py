"""The retry of storage calls while the study database is unreachable (``rdb.with_retry``)."""

from __future__ import annotations

import pytest
import sqlalchemy.exc as sa_exc

from cachesearch.search import rdb


def _down_then_up(failures: int):
    calls = {"n": 0}

    def fn() -> str:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise sa_exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("server closed the connection"))
        return "ok"

    return fn, calls


@pytest.mark.parametrize(("heartbeat", "longest"), [("1:4", 1.0), ("10:40", 5.0), ("3:12", 3.0)])
def test_retries_back_off_to_the_heartbeat_interval_at_most(monkeypatch, heartbeat, longest) -> None:
    """A live process must beat again within an interval of the database's return: the others fail its trial once
    a grace has passed since their own reconnection, so waits between tries never exceed the interval (nor 5 s)."""
    waits: list[float] = []
    monkeypatch.setattr(rdb.time, "sleep", waits.append)
    monkeypatch.setenv("CACHESEARCH_HEARTBEAT", heartbeat)
    fn, calls = _down_then_up(8)
    health = rdb.Health()
    assert rdb.with_retry(fn, "test", health) == "ok" and calls["n"] == 9
    assert waits[:3] == pytest.approx([0.2, 0.4, 0.8])  # doubling from 0.2 s
    assert max(waits) == pytest.approx(longest) and waits[-1] == pytest.approx(longest)
    assert health.last_error is not None and health.since >= health.last_error  # reconnected after the last error


def test_a_real_error_is_not_retried(monkeypatch) -> None:
    monkeypatch.setattr(rdb.time, "sleep", lambda s: pytest.fail("slept on a real error"))

    def fn() -> None:
        raise sa_exc.ProgrammingError("SELECT nope", {}, Exception("syntax error"))

    with pytest.raises(sa_exc.ProgrammingError):
        rdb.with_retry(fn, "test")


def test_tables_created_by_another_process_at_the_same_moment_are_tried_again(monkeypatch) -> None:
    """PostgreSQL fails the slower of two concurrent ``CREATE TABLE`` with a unique violation on ``pg_type`` (seen:
    a run exiting with "--storage: cannot open …: IntegrityError … pg_type_typname_nsp_index"); the next try finds
    the tables. Other errors are raised at once."""
    waits: list[float] = []
    monkeypatch.setattr(rdb.time, "sleep", waits.append)
    race = sa_exc.IntegrityError("CREATE TABLE studies", {}, Exception('unique constraint "pg_type_typname_nsp_index"'))
    calls = {"n": 0}

    def make() -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            raise race
        if calls["n"] == 2:
            raise sa_exc.ProgrammingError("CREATE TABLE trials", {}, Exception('relation "trials" already exists'))
        return "storage"

    assert rdb._created(make) == "storage" and calls["n"] == 3 and len(waits) == 2

    def wrong() -> None:
        raise sa_exc.ProgrammingError("SELECT nope", {}, Exception("syntax error"))

    with pytest.raises(sa_exc.ProgrammingError):
        rdb._created(wrong)

    def always() -> None:
        raise race

    with pytest.raises(sa_exc.IntegrityError):
        rdb._created(always, tries=3)


def test_many_processes_open_a_fresh_database_at_once(pg_server) -> None:
    """Hosts starting together on an empty database all open it (Optuna creates its tables in each)."""
    import threading

    from cachesearch.search.storage import open_storage

    url = pg_server.createdb("fresh_at_once")
    barrier, errors = threading.Barrier(6), []

    def start() -> None:
        barrier.wait()
        try:
            open_storage(url).get_all_studies()
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
