"""`benchmarks/objective_stat.py`'s summary and --merge on made-up result documents (no search)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import objective_stat  # noqa: E402


def _doc(stat: str, mean: float, p90: float, over: int, seconds: float = 10.0) -> dict:
    unseen = {"valid": True, "n": 64, "mean": mean, "median": mean / 2, "p90": p90, "max": 2 * p90,
              "over_0.05": over}
    picks = [{"budget": b, "trial": 7, "cost": b - 0.01, "unseen": unseen} for b in objective_stat.BUDGETS]
    return {"benchmark": "objective_stat", "budgets": list(objective_stat.BUDGETS), "config": {"trials": 100},
            "seconds": seconds, "models": {"m": {"unseen_prompts": "sha256:x",
                                                 "stats": {stat: {"search": {}, "picks": picks}}}}}


def test_merge_combines_statistics_and_recomputes_the_summary():
    doc = objective_stat.merge([_doc("p90", 0.02, 0.04, 1), _doc("mean", 0.01, 0.08, 2)])
    assert list(doc["models"]["m"]["stats"]) == ["mean", "p90"] and doc["seconds"] == 20.0
    s = doc["summary"]["m"]
    assert s["mean"]["p90_ratio_geomean"] == pytest.approx(1.0)
    assert s["p90"]["mean_ratio_geomean"] == pytest.approx(2.0) and s["p90"]["p90_ratio_geomean"] == pytest.approx(0.5)
    assert s["p90"]["images_over_0.05"] == len(objective_stat.BUDGETS)
    assert "| m | p90 | 2.00 | 0.50 |" in objective_stat.tables(doc)


def test_merge_refuses_files_of_different_trials_or_pairs():
    other = _doc("p90", 0.02, 0.04, 1)
    other["config"]["trials"] = 50
    with pytest.raises(ValueError, match="trials"):
        objective_stat.merge([_doc("mean", 0.01, 0.08, 2), other])
    other = _doc("p90", 0.02, 0.04, 1)
    other["models"]["m"]["unseen_prompts"] = "sha256:y"
    with pytest.raises(ValueError, match="different unseen pairs"):
        objective_stat.merge([_doc("mean", 0.01, 0.08, 2), other])


def test_a_file_without_the_mean_objective_has_no_ratios_yet():
    doc = _doc("p90", 0.02, 0.04, 1)
    assert objective_stat.summarize(doc["models"]) == {}  # its --merge with the mean's file gives them
