"""A schedule records the full-compute run it was scored against; ``evaluate`` compares with it by default."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

import cachesearch as cs
from cachesearch.cli import app
from cachesearch.evaluate import EvalConfig, Evaluator


def test_a_step_set_schedule_from_a_6_step_search_is_evaluated_against_6_steps(tmp_path: Path) -> None:
    ev = Evaluator(EvalConfig(model="embedded", num_inference_steps=6, n_train=2, n_heldout=1, batch_size=2,
                              cache_dir=str(tmp_path / "cache")))
    sched = ev.compile(cs.Joint(steps=cs.StepSet(count=3), mask=cs.Full()), name="steps3")
    assert sched.num_steps == 3
    assert sched.reference == cs.schedule.ReferenceRun(scheduler="DDIMScheduler", num_inference_steps=6,
                                                       guidance_scale=ev.guidance_scale)
    train = ev.evaluate(sched, split="train")
    path = sched.save(tmp_path / "steps3.yaml")
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["evaluate", str(path), "--n-train", "2", "--n-heldout", "1", "--batch-size", "2",
                                   "--cache-dir", str(tmp_path / "cache"), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "recorded reference: full compute at 6 steps" in res.output
    doc = json.loads(out.read_text())
    assert doc["evaluator"]["sampler"]["num_inference_steps"] == 6
    assert doc["train"]["quality"] == train.quality  # the same comparison the search made
    assert doc["train"]["cost_ratio"] == 0.5
