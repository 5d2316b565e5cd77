"""A runtime schedule file through the CLI, as a static one: ``validate --model --run``, ``generate --schedule``
and ``evaluate`` on the embedded shapes-flux model (4 steps, few images)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from diffusers.hooks import FirstBlockCacheConfig
from typer.testing import CliRunner

import cachesearch as cs
from cachesearch.cli import app
from cachesearch.embedded import shapes_flux
from cachesearch.models._loaders import load_model

runner = CliRunner()


@pytest.fixture(scope="module")
def schedule_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    loaded = load_model("embedded:shapes-flux")
    sched = cs.compile_schedule(loaded.pipe, cs.DiffusersCache(FirstBlockCacheConfig(threshold=0.2)),
                                num_inference_steps=4, guidance_scale=shapes_flux.DEFAULT_GUIDANCE_SCALE,
                                source=loaded.source)
    return sched.save(tmp_path_factory.mktemp("sched") / "fbcache.yaml")


def test_validate_checks_a_runtime_file_against_the_model_and_runs_it(schedule_file: Path) -> None:
    result = runner.invoke(app, ["validate", str(schedule_file), "--model", "embedded:shapes-flux", "--run"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # rich wraps lines at the terminal width
    assert "runtime diffusers FirstBlockCacheConfig" in text
    assert "FirstBlockCacheConfig enables on it with the installed version" in text and "run ok" in text


def test_generate_applies_a_runtime_schedule(schedule_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "img.png"
    result = runner.invoke(app, ["generate", "--prompt", "a red circle and a blue square on a green background",
                                 "--schedule", str(schedule_file), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and "with schedule 'fbcache-t0.2'" in result.output


def test_evaluate_counts_a_runtime_schedules_cost_per_split(schedule_file: Path, tmp_path: Path) -> None:
    out_json = tmp_path / "r.json"
    result = runner.invoke(app, ["evaluate", str(schedule_file), "--n-train", "2", "--n-heldout", "1",
                                 "--latency", "analytic", "--cache-dir", str(tmp_path / "cache"), "--json",
                                 str(out_json)])
    assert result.exit_code == 0, result.output
    assert "executed" in result.output and "held-out" in result.output  # the counted rows (rich wraps cells)
    doc = json.loads(out_json.read_text())
    assert 0 < doc["train"]["cost_ratio"] <= 1 and 0 < doc["heldout"]["cost_ratio"] <= 1
