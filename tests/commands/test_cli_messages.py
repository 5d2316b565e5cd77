"""What a newcomer sees when a command is used wrongly: one line naming the option, exit code 2, no folder left
behind; validate on a whole schedules folder; flags in --help. Nothing here loads a model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cachesearch.cli import app
from cachesearch.search import RunSettings
from cachesearch.search.study import save_settings

runner = CliRunner()
EXAMPLE = Path(__file__).resolve().parents[2] / "artifacts" / "examples" / "embedded" / "schedules"
NO_CUDA = ("error: --device cuda: CUDA is not available on this machine (torch.cuda.is_available() is False); "
           "use --device cpu")


def _run(args: list[str]) -> tuple[int, str]:
    result = runner.invoke(app, args, env={"COLUMNS": "250"})
    return result.exit_code, result.output


def test_every_help_shows_flags_without_a_type() -> None:
    names = [c.name for c in app.registered_commands]
    assert {"run", "export", "report", "validate", "evaluate", "profile", "generate", "pick"} <= set(names)
    for args in ([], *([n] for n in names)):
        code, text = _run([*args, "--help"])
        assert code == 0 and "<bool>" not in text, (args, text)
    assert "--quiet" in _run(["run", "--help"])[1]
    assert runner.invoke(app, ["run", "-q", "--help"]).exit_code == 0  # still a flag: takes no value


@pytest.mark.parametrize("args", [
    ["run", "--device", "cuda", "-q"],
    ["evaluate", "missing.yaml", "--device", "cuda"],
    ["generate", "--prompt", "a red circle", "--device", "cuda"],
    ["profile", "--device", "cuda"],
    ["validate", "missing.yaml", "--model", "embedded", "--device", "cuda"],
])
def test_device_cuda_without_a_gpu_is_one_line(args, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.chdir(tmp_path)
    code, text = _run(args)
    assert code == 2, text
    assert text.strip() == NO_CUDA
    assert list(tmp_path.iterdir()) == []  # nothing was created (no run folder, no image)


def test_a_bad_device_string_names_the_option(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, text = _run(["profile", "--device", "gpu"])
    assert code == 2 and text.strip() == "error: --device: expected cpu, cuda or cuda:N, got 'gpu'"


def test_resume_with_another_device_is_refused_like_other_settings(tmp_path) -> None:
    out = tmp_path / "runs"
    save_settings(RunSettings(name="x", out=str(out)))
    code, text = _run(["run", "--name", "x", "--device", "cuda:1", "--steps", "7", "--out", str(out), "-q"])
    assert code == 2
    assert "cannot resume study 'x': it was created with different settings:" in text
    assert "\n  - device: study has 'cpu', this run has 'cuda:1'\n" in text
    assert "\n  - steps: study has 20, this run has 7\n" in text
    assert sorted(p.name for p in (out / "x").iterdir()) == ["run.yaml"]


def test_a_bad_scheduler_names_the_option_and_the_choices(tmp_path) -> None:
    out = tmp_path / "runs"
    code, text = _run(["run", "--scheduler", "nosuch", "--out", str(out), "-q"])
    assert code == 2
    assert text.startswith("error: --scheduler: expected one of ['ddim', 'dpmsolver++', 'euler', 'heun', 'pndm']")
    assert "got 'nosuch'" in text and "EvalConfig" not in text
    assert not out.exists()
    code, text = _run(["run", "--objective", "nosuch", "--out", str(out), "-q"])
    assert code == 2 and text.startswith("error: --objective: expected one of ['cost', 'latency']"), text
    assert not out.exists()


def test_a_bad_evaluation_option_of_profile_names_its_flag(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, text = _run(["profile", "--n", "0"])
    assert code == 2 and text.startswith("error: --n: expected a positive integer, got 0"), text


def test_a_run_that_fails_before_it_starts_leaves_no_folder(tmp_path) -> None:
    out = tmp_path / "runs"
    code, text = _run(["run", "--name", "bad", "--model", str(tmp_path / "no-such-model"), "--out", str(out), "-q"])
    assert code == 2 and "Traceback" not in text, text
    assert not (out / "bad").exists()


def test_export_and_report_of_a_missing_run_create_nothing(tmp_path) -> None:
    out = tmp_path / "runs"
    for name in ("b", "a"):
        save_settings(RunSettings(name=name, out=str(out)))
    for command in ("export", "report"):
        code, text = _run([command, "--name", "nosuch", "--out", str(out)])
        assert code == 2
        assert text.strip() == f"error: no run named 'nosuch' under {out} (runs: a, b)"
        assert sorted(p.name for p in out.iterdir()) == ["a", "b"]


@pytest.fixture
def schedules(tmp_path) -> Path:
    folder = tmp_path / "schedules"
    shutil.copytree(EXAMPLE, folder)
    return folder


def test_validate_a_shell_glob_of_a_schedules_folder(schedules) -> None:
    files = sorted(str(p) for p in schedules.glob("*.yaml"))
    assert any(f.endswith("index.yaml") for f in files)
    code, text = _run(["validate", *files])
    assert code == 0, text
    assert f"index ok: {schedules / 'index.yaml'}" in text and "every listed file present and valid" in text
    assert text.count("format ok:") == len(files) - 1  # each schedule once, though the index lists it too


def test_validate_a_folder_and_an_index_with_a_missing_file(schedules) -> None:
    code, text = _run(["validate", str(schedules)])
    assert code == 0 and "index ok:" in text, text
    listed = sorted(schedules.glob("t*.yaml"))
    listed[0].unlink()
    code, text = _run(["validate", str(schedules / "index.yaml")])
    assert code == 2
    assert f"lists {listed[0].name}, which is not in {schedules}" in text
    (schedules / listed[1].name).write_text("format: cachesearch/schedule@1\nname: x\n")
    code, text = _run(["validate", str(schedules)])
    assert code == 2 and "error:" in text and "Traceback" not in text
