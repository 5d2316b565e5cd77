"""`benchmarks/forecast_guard.py`: its grid pairs each unguarded schedule with its guarded twin (same mask, same
cost), and its table (no model scored)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import forecast_guard  # noqa: E402

from cachesearch.schedule import BlockProfile  # noqa: E402


def test_the_grid_is_unguarded_then_guarded_twins_of_every_order_and_gap() -> None:
    profile = BlockProfile(blocks=("a",), changes=((0.0,) + (0.1,) * 19,))
    grid = forecast_guard.grid(profile)
    assert len(grid) == 12
    for plain, guarded in zip(grid[::2], grid[1::2]):
        assert not plain.guard and guarded.guard
        assert (plain.order, plain.max_skip, plain.threshold) == (guarded.order, guarded.max_skip, guarded.threshold)
        assert plain.taylor_guard() is False and guarded.taylor_guard() is True
    assert {(p.order, p.max_skip) for p in grid} == {(o, s) for o in (1, 2) for s in (0, 1, 2)}


def test_the_table_counts_the_images_the_guard_changed() -> None:
    row = {"order": 2, "max_skip": 0, "guard": False, "cost": 0.403, "mean": 0.0365, "p90": 0.1369, "max": 0.3285,
           "broken": 12, "n": 64, "changed": None}
    doc = {"schedules": [row, {**row, "guard": True, "broken": 9, "changed": 17}]}
    lines = forecast_guard.table(doc).splitlines()
    assert lines[2] == "| 2 | any | no | 0.403 | 0.0365 | 0.1369 | 0.3285 | 12 / 64 |  |"
    assert lines[3] == "| 2 | any | yes | 0.403 | 0.0365 | 0.1369 | 0.3285 | 9 / 64 | 17 / 64 |"
