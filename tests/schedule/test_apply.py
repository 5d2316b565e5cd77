"""Schedule.apply / .applied delegate to the applier the runtime registers (no schedule → runtime import)."""

from __future__ import annotations

from pathlib import Path

import pytest

import cachesearch as cs
import cachesearch.runtime
from cachesearch.schedule import _apply, load_schedule

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture
def sched():
    return load_schedule(GOLDEN / "v1_deepcache.yaml")


@pytest.fixture
def no_applier(monkeypatch):
    monkeypatch.setattr(_apply, "_applier", None)


class _Handle:
    def __init__(self) -> None:
        self.events: list[str] = []

    def remove(self) -> None:
        self.events.append("remove")

    def __enter__(self) -> _Handle:
        self.events.append("enter")
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def test_importing_the_runtime_registers_apply_schedule():
    assert _apply.get_applier() is cachesearch.runtime.apply_schedule
    assert _apply.get_applier() is cs.apply_schedule


def test_without_a_runtime_apply_names_the_import_to_add(sched, no_applier):
    with pytest.raises(cs.ScheduleError, match=r"no runtime is registered; `import cachesearch\.runtime`"):
        sched.apply(object())
    with pytest.raises(cs.ScheduleError, match="import cachesearch.runtime"):
        sched.applied(object())


def test_apply_and_applied_pass_schedule_target_and_options_through(sched, no_applier):
    calls, handle, target = [], _Handle(), object()

    def applier(schedule, pipe, **options):
        calls.append((schedule, pipe, options))
        return handle

    assert _apply.register_applier(applier) is applier
    assert sched.apply(target, force=True) is handle
    with sched.applied(target, cfg=False) as h:
        assert h is handle
    assert calls == [(sched, target, {"force": True}), (sched, target, {"cfg": False})]
    assert handle.events == ["enter", "remove"]


def test_register_applier_refuses_a_non_callable(no_applier):
    with pytest.raises(TypeError, match="expected a callable, got 3"):
        _apply.register_applier(3)  # type: ignore[arg-type]
    with pytest.raises(cs.ScheduleError, match="no runtime is registered"):
        _apply.get_applier()
