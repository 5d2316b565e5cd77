"""``cachesearch run`` options → RunSettings (no model is loaded: the search is replaced by a recorder)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import cachesearch.search
from cachesearch.cli import app
from cachesearch.search import SearchError

runner = CliRunner()


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict:
    seen: dict = {}

    def fake_run_search(settings, progress, **kwargs):
        seen.update(settings=settings, **kwargs)
        raise SearchError("recorded")

    monkeypatch.setattr(cachesearch.search, "run_search", fake_run_search)
    return seen


def test_options_become_settings_by_field_name(tmp_path, captured) -> None:
    out = str(tmp_path / "runs")
    result = runner.invoke(app, ["run", "--steps", "6", "--max-lpips", "0.2", "--prompts", "p.txt", "--timeout", "0",
                                 "--space", "steps", "--seed", "3", "--out", out, "-q"])
    assert result.exit_code == 2 and "error: recorded" in result.output
    s = captured["settings"]
    assert (s.name, s.num_steps, s.max_quality, s.prompts_file, s.timeout, s.space, s.seed, s.out) == (
        "embedded-default6", 6, 0.2, "p.txt", None, "steps", 3, out)
    assert captured["space_given"] is True
    assert s.trials == 1000 and s.population == 24  # untouched options keep RunSettings' defaults


def test_without_options_the_defaults_are_those_of_run_settings(tmp_path, captured) -> None:
    result = runner.invoke(app, ["run", "--out", str(tmp_path), "-q"])
    assert result.exit_code == 2
    s = captured["settings"]
    assert s == type(s)(name="embedded-default20", out=str(tmp_path))
    assert captured["space_given"] is False


def test_help_shows_the_defaults_of_run_settings() -> None:
    result = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    assert "Reference sampler steps. Default: 20." in result.output
    assert "random trials after the warm start. Default: 24." in result.output
    assert "gp or random. Default: tpe." in result.output


@pytest.mark.parametrize(("given", "stages"), [("off", None), ("2,4", (2, 4)), ("3", (3,))])
def test_screen_is_an_option_of_run(tmp_path, captured, given, stages) -> None:
    result = runner.invoke(app, ["run", "--screen", given, "--out", str(tmp_path), "-q"])
    assert result.exit_code == 2 and "error: recorded" in result.output, result.output
    s = captured["settings"]
    assert s.screen == given
    assert (s.screening.stages if s.screening else None) == stages


def test_a_bad_screen_value_is_one_line(tmp_path) -> None:
    result = runner.invoke(app, ["run", "--screen", "4,x", "--out", str(tmp_path), "-q"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --screen: expected image counts like 2,4 or 'off', got '4,x'"


def test_run_prints_plain_progress_lines_when_stdout_is_not_a_terminal(tmp_path, monkeypatch) -> None:
    def fake_run_search(settings, progress, **kwargs):
        progress.stage(f"loading {settings.model}")
        progress.start(total=2, done=0, timeout=None)
        progress.trial(number=0, done=1, front=1, outcome=None)
        progress.trial(number=1, done=2, front=1, outcome=None)
        progress.end()
        raise SearchError("stop here")

    monkeypatch.setattr(cachesearch.search, "run_search", fake_run_search)
    result = runner.invoke(app, ["run", "--out", str(tmp_path)])  # CliRunner's stdout is no terminal
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert lines[:2] == ["loading embedded …", "searching: 0/2 trials"], lines
    assert lines[2].startswith("searching: 2/2 trials, front 1")
    assert lines[3].startswith("searched: 2 trials, front 1")
    assert lines[-1] == "error: stop here"


def test_the_reference_cache_is_the_users_not_one_under_the_current_folder(tmp_path, captured, monkeypatch) -> None:
    from cachesearch._util import default_cache_dir
    from cachesearch.evaluate import EvalConfig

    monkeypatch.delenv("CACHESEARCH_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert default_cache_dir() == "~/.cache/cachesearch"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == str(tmp_path / "xdg" / "cachesearch")
    monkeypatch.setenv("CACHESEARCH_CACHE_DIR", str(tmp_path / "mine"))
    assert EvalConfig().cache_dir == str(tmp_path / "mine")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = runner.invoke(app, ["run", "--out", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 2 and "error: recorded" in result.output
    assert captured["settings"].eval_config(captured["cache_dir"]).cache_dir == str(tmp_path / "mine")
    assert list(work.iterdir()) == []  # nothing made under the current folder
