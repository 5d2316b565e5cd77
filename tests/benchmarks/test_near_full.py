"""`benchmarks/near_full.py`: its grid (fewer steps, then every middle-cache variant) and its table, which lists
the schedules that skip anything by cost and counts those that skip nothing (no model scored)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import near_full  # noqa: E402

from cachesearch.schedule import BlockProfile  # noqa: E402


def test_the_grid_is_fewer_steps_then_every_middle_cache_variant() -> None:
    profile = BlockProfile(blocks=("a",), changes=((0.0,) + (0.1,) * 19,))
    grid = near_full.grid(profile)
    steps = [p for p in grid if p.kind == "steps"]
    assert [p.count for p in steps] == list(near_full.STEPS) and grid[:len(steps)] == steps
    middle = grid[len(steps):]
    assert {(p.threshold, p.front, p.back, p.order) for p in middle} == {
        (t, f, b, o) for t in near_full.THRESHOLDS for f in (1, 2) for b in (0, 1) for o in (0, 1, 2)}
    assert len(middle) == len(near_full.THRESHOLDS) * 12
    assert {(p.kind, p.warmup, p.max_skip) for p in middle} == {("middleauto", 1, 1)}
    assert near_full.describe(middle[0]) == f"middleauto t={near_full.THRESHOLDS[0]:g} F1B0 order 0"
    assert near_full.describe(steps[0]) == "steps 14"


def test_the_table_lists_what_skips_by_cost_and_counts_what_does_not() -> None:
    def row(label: str, cost: float, mean: float) -> dict:
        return {"label": label, "cost": cost, "mean": mean, "p90": mean, "max": 0.2, "broken": 1, "n": 64}

    doc = {"schedules": [row("steps 18", 0.9, 7.8e-4), row("m a", 1.0, 0.0), row("m b", 0.834, 2.8e-3)]}
    lines = near_full.table(doc).splitlines()
    assert lines[2] == "| m b | 0.834 | 2.80e-03 | 2.80e-03 | 0.200 | 1 / 64 |"
    assert lines[3].startswith("| steps 18 | 0.900 |") and len(lines) == 6
    assert lines[-1] == "1 of the 3 schedules skip nothing (cost 1.0)."
