"""What ``cachesearch run`` prints at the end, and before any work for a finished run or a storage it cannot
open (issue 31 items 3, 4, 6, 10, 13): file names whole at 80 columns, analytic cost not called a speedup,
which budget stopped the search, the study path relative like the others and no password, and a finished run
that says so and how to go on instead of silently evaluating nothing."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial
from rich.console import Console
from typer.testing import CliRunner

from cachesearch.cli import app
from cachesearch.commands.run import _summary
from cachesearch.search import RunSettings
from cachesearch.search.export import ExportEntry, ExportResult, QualityPair
from cachesearch.search.run import RunSummary
from cachesearch.search.study import open_storage, save_settings

runner = CliRunner()
NAMES = ["t0453-steps12-deepcache-n2-b6-nonuniform.yaml", "t0001-steps2.yaml"]


def _entry(file: str, cost: float, speedup: float | None = None) -> ExportEntry:
    return ExportEntry(file=file, name=file, trial=int(file[1:5]), baseline="steps-2" if "steps2" in file else None,
                       baseline_kind=None, policy={}, quality=QualityPair(train=0.000263123, heldout=8.4012e-05),
                       objective=cost, cost_ratio=cost, speedup=speedup, latency_ms=None,
                       accuracy=QualityPair(train=None, heldout=None))


def _render(summary: RunSummary, width: int) -> str:
    console = Console(record=True, width=width)
    _summary(console, summary)
    return console.export_text()


def _summary_of(tmp_path: Path, speedups=(None, None), storage: str | None = None, **kw) -> RunSummary:
    run_dir = Path("runs") / "x"
    export = ExportResult(schedules_dir=run_dir / "schedules", index_path=run_dir / "schedules" / "index.yaml",
                          entries=[_entry(n, c, s) for n, c, s in zip(NAMES, (0.0527, 0.5), speedups)],
                          front_trials=[], metric="stlpips-alex")
    fields = dict(name="x", run_dir=run_dir, storage=storage or str((run_dir / "study.journal").resolve()),
                  trials_total=30, trials_this_session=12, completed=12, failed=0, duplicates=0, front=[],
                  export=export, stopped="budget", finished=30, trial_budget=30, timeout=330.0)
    return RunSummary(**{**fields, **kw})


def test_at_80_columns_no_file_name_is_cut_and_cost_is_not_called_speedup(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    text = _render(_summary_of(tmp_path), 80)
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "…" not in text, text  # no cell or header cut
    for name in NAMES:
        assert name in text, text
    assert "0.053" in text and "0.000263" in text and "8.4e-05" in text
    header = next(line for line in text.splitlines() if "schedule" in line and "cost" in line)
    assert "speedup" not in header and "18.99" not in text  # 1/cost is no speedup
    wide = _render(_summary_of(tmp_path), 160)
    assert "from" in next(line for line in wide.splitlines() if "schedule" in line) and "steps-2" in wide
    measured = _render(_summary_of(tmp_path, speedups=(12.26, 1.9)), 80)
    assert "…" not in measured and "12.26×" in measured and all(n in measured for n in NAMES), measured
    assert "speedup: measured on this device" in measured


def test_which_budget_stopped_the_search(tmp_path: Path) -> None:
    assert "stopped: trial budget reached (30 finished of --trials 30)" in _render(_summary_of(tmp_path), 200)
    text = _render(_summary_of(tmp_path, stopped="timeout"), 200)
    assert "stopped: time budget reached (--timeout 330 s)" in text
    assert "search on where it stopped: `cachesearch run --name x`" in text


def test_the_study_path_is_relative_and_a_password_is_never_shown(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    journal = str((tmp_path / "runs" / "x" / "study.journal").resolve())
    text = _render(_summary_of(tmp_path, storage=journal), 200)
    assert "study:      runs/x/study.journal  (browse: optuna-dashboard runs/x/study.journal)" in text
    assert str(tmp_path) not in text
    text = _render(_summary_of(tmp_path, storage="postgresql+psycopg://nobody:s3cretpw@db.example/cs"), 200)
    assert "s3cretpw" not in text and "postgresql+psycopg://nobody:***@db.example/cs" in text


def test_an_unreachable_storage_is_one_line_without_the_password_before_the_model_loads(tmp_path: Path) -> None:
    url = "postgresql+psycopg://nobody:s3cretpw@127.0.0.1:1/nodb"
    result = runner.invoke(app, ["run", "--storage", url, "--out", str(tmp_path / "runs"), "-q"],
                           env={"COLUMNS": "250"})
    assert result.exit_code == 2, result.output
    assert "s3cretpw" not in result.output
    line = result.output.strip()
    assert "\n" not in line, line
    assert line.startswith("error: --storage: cannot open 'postgresql+psycopg://nobody:***@127.0.0.1:1/nodb': ")
    assert "Connection refused" in line or "connection failed" in line
    assert not (tmp_path / "runs").exists()


def test_a_finished_run_says_so_and_how_to_go_on(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    settings = RunSettings(name="x", out=str(out), trials=3)
    save_settings(settings)
    journal = out / "x" / "study.journal"
    study = optuna.create_study(study_name="x", storage=open_storage(str(journal)), directions=["minimize"] * 2)
    for i in range(3):
        study.add_trial(create_trial(values=[0.1, 0.5], params={"a": float(i)},
                                     distributions={"a": FloatDistribution(0, 9)}))
    before = journal.read_bytes()
    result = runner.invoke(app, ["run", "--name", "x", "--out", str(out)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "run 'x' is finished: 3 finished trials of --trials 3"
    assert lines[1] == f"  search further:     cachesearch run --name x --out {out} --trials 103"
    assert lines[2] == f"  start a fresh run:  cachesearch run --name x-2 --out {out} (or remove {out / 'x'})"
    assert lines[3] == f"  re-export its front: cachesearch export --name x --out {out}"
    assert journal.read_bytes() == before  # nothing searched, nothing rewritten
