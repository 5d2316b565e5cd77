"""``benchmarks/runtime_families.py`` on two hand-made run folders: trial counts from the journals, fronts,
hypervolume, the runtime schedules on the front and the per-family table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import runtime_families  # noqa: E402


def _run(path: Path, space: str, entries: list[dict], trials: int, families: list[dict] | None = None) -> Path:
    (path / "schedules").mkdir(parents=True)
    (path / "run.yaml").write_text(yaml.safe_dump({"settings": {"space": space, "model": "m", "steps": 20,
                                                                "seed": 0}}))
    (path / "schedules" / "index.yaml").write_text(yaml.safe_dump({"schedules": entries, "families": families or []}))
    lines = [{"op_code": 4}] * trials + [{"op_code": 6, "trial_id": 0, "state": 0,
                                          "datetime_start": "2026-12-07T04:43:35.5+00:00"}]
    lines += [{"op_code": 6, "trial_id": i, "state": 3 if i == 1 else 1} for i in range(1, trials)]
    lines += [{"op_code": 6, "trial_id": 0, "state": 1, "datetime_complete": "2026-12-07T04:43:37+00:00"}]
    (path / "study.journal").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def _entry(file, cost, train, held, kind="static", policy=None, cost_heldout=None):
    return {"file": file, "trial": 1, "objective": cost, "quality": {"train": train, "heldout": held}, "kind": kind,
            "policy": policy or {"kind": "taylorseer"}, "cost_heldout": cost_heldout}


def test_compare_two_runs(tmp_path):
    fb = {"kind": "diffusers", "config": {"method": "FirstBlockCacheConfig", "threshold": 0.2}}
    families = [{"family": "fbcache", "kind": "runtime", "max_cost": 0.5, "trial": 1, "cost": 0.4, "train": 0.01,
                 "heldout": 0.02}, {"family": "taylorseer", "kind": "static", "max_cost": 0.5}]
    w = _run(tmp_path / "w", "dit", [_entry("a.yaml", 0.4, 0.01, 0.02, "runtime", fb, 0.45),
                                     _entry("b.yaml", 0.8, 0.001, 0.002)], 30, families)
    wo = _run(tmp_path / "wo", "dit-static", [_entry("b.yaml", 0.8, 0.001, 0.002)], 30)
    doc = runtime_families.compare(w, wo, 0.1)
    assert doc["equal_trials"] and doc["with_runtime"]["trials"] == {"created": 30, "finished": 30, "failed": 1,
                                                              "trial_seconds": 1.5}
    assert doc["with_runtime"]["front_kinds"] == {"static": 1, "runtime": 1}
    assert doc["with_runtime"]["hypervolume"] == pytest.approx(0.098 * 0.2 + 0.08 * 0.4)
    assert doc["without_runtime"]["hypervolume"] == pytest.approx(0.098 * 0.2)
    assert doc["hypervolume_ratio_with_over_without"] > 1
    assert [r["family"] for r in doc["runtime_on_front"]] == ["fbcache"]
    assert doc["with_runtime"]["best_at_cost"]["0.5"]["family"] == "fbcache"
    assert doc["without_runtime"]["best_at_cost"]["0.5"] is None
    text = runtime_families.tables(doc)
    assert "| a.yaml | fbcache | 0.400 | 0.450 |" in text and "| fbcache | runtime | 0.02 (0.01, 0.400) t1 |" in text
