"""``cachesearch evaluate`` scores a schedule on as many images as its run did, so its numbers match the
report's (issue 31 item 12: it used 8 held-out images where the run used 16). No model is loaded: the
evaluator is replaced by a recorder of its configuration."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import cachesearch.evaluate
from cachesearch.cli import app
from cachesearch.schedule import LossStats, Metrics, QualityMetrics, TailMetrics, load_schedule

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "artifacts" / "examples" / "embedded"
runner = CliRunner()


@pytest.fixture
def configs(monkeypatch: pytest.MonkeyPatch) -> list:
    seen: list = []

    class Recorder:
        def __init__(self, config, progress=None):
            seen.append(config)
            raise RuntimeError("recorded")

    monkeypatch.setattr(cachesearch.evaluate, "Evaluator", Recorder)
    return seen


def _evaluate(path: Path, *extra: str) -> str:
    result = runner.invoke(app, ["evaluate", str(path), "--cache-dir", "unused", *extra], env={"COLUMNS": "250"})
    assert isinstance(result.exception, RuntimeError), result.output
    return result.output


def _stats(n: int) -> LossStats:
    return LossStats(n=n, mean=0.1, median=0.1, p90=0.1, cvar=0.1, max=0.1, over=0.0, threshold=0.05)


def _unrecorded(dst: Path) -> Path:
    """An example schedule saved without the image counts its metrics record (as files before format @4)."""
    sched = load_schedule(sorted((EXAMPLE / "schedules").glob("t*.yaml"))[0])
    return dataclasses.replace(sched, metrics=Metrics()).save(dst)


def test_the_counts_a_schedule_file_records(tmp_path: Path, configs: list) -> None:
    sched = load_schedule(sorted((EXAMPLE / "schedules").glob("t*.yaml"))[0])
    q = QualityMetrics(metric="stlpips-alex", train=0.1, heldout=0.1, n_images=5)
    tail = TailMetrics(train=_stats(2), heldout=_stats(3))
    recorded = dataclasses.replace(sched, metrics=Metrics(quality=q, tail=tail))
    path = recorded.save(tmp_path / "s.yaml")
    text = _evaluate(path)
    assert (configs[0].n_train, configs[0].n_heldout) == (2, 3)
    assert "images: 2 train / 3 held-out (as recorded in the schedule file; --n-train / --n-heldout to change)" in text
    _evaluate(path, "--n-heldout", "7")
    assert (configs[1].n_train, configs[1].n_heldout) == (2, 7)


def test_the_counts_of_the_run_folder_the_file_is_in(tmp_path: Path, configs: list) -> None:
    run = tmp_path / "embedded-default20"
    shutil.copytree(EXAMPLE, run)
    doc = yaml.safe_load((run / "run.yaml").read_text())
    doc["settings"].update(n_train=3, n_heldout=16)
    (run / "run.yaml").write_text(yaml.safe_dump(doc))
    text = _evaluate(_unrecorded(sorted((run / "schedules").glob("t*.yaml"))[0]))
    assert (configs[0].n_train, configs[0].n_heldout) == (3, 16)
    assert "(as its run 'embedded-default20' used;" in text


def test_without_a_record_the_defaults_of_run(tmp_path: Path, configs: list) -> None:
    path = _unrecorded(tmp_path / "alone.yaml")
    _evaluate(path)
    assert (configs[0].n_train, configs[0].n_heldout) == (8, 16)
