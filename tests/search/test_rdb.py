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
