"""``cachesearch generate --schedule`` speaks CLI (issue 31 item 11): a schedule for another architecture asks
for ``--force`` (not ``force=True``) and applies with it; options that contradict the schedule are refused
before the model loads, naming the option to drop (not ``**schedule.pipeline_kwargs()``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

import cachesearch.models
from cachesearch.cli import app
from cachesearch.embedded import shapes
from cachesearch.schedule import BlockEntry, load_schedule

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = sorted((ROOT / "artifacts" / "examples" / "embedded" / "schedules").glob("t*.yaml"))[0]
EMBEDDED_WEIGHTS = shapes.pipeline_path() / "unet" / "diffusion_pytorch_model.safetensors"
runner = CliRunner()


def _run(args: list[str]) -> tuple[int, str]:
    result = runner.invoke(app, ["generate", "--prompt", "a red circle", *args], env={"COLUMNS": "250"})
    return result.exit_code, result.output


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(cachesearch.models, "load_model", refuse)


def test_steps_that_contradict_the_schedule_are_refused_before_the_model(tmp_path: Path, no_model) -> None:
    sched = load_schedule(EXAMPLE)
    code, text = _run(["--schedule", str(EXAMPLE), "--steps", "7", "--out", str(tmp_path / "a.png")])
    assert code == 2
    assert text.strip() == (f"error: --steps 7: schedule {sched.name!r} runs {sched.num_steps} steps; leave --steps "
                            f"out (generate follows the schedule), or add --reference to generate its full-compute "
                            f"reference")
    assert "pipeline_kwargs" not in text


def test_per_branch_masks_without_guidance_name_the_option(tmp_path: Path, no_model) -> None:
    sched = load_schedule(EXAMPLE)
    first = sched.blocks[0]
    uncond = "R" + "." * (len(first.cond) - 1)
    split = dataclasses.replace(sched, blocks=(BlockEntry(block=first.block, cond=first.cond, uncond=uncond),
                                               *sched.blocks[1:]))
    path = split.save(tmp_path / "per-branch.yaml")
    code, text = _run(["--schedule", str(path), "--guidance-scale", "1", "--out", str(tmp_path / "a.png")])
    assert code == 2
    assert text.strip().startswith(f"error: --guidance-scale 1: schedule {sched.name!r} has per-branch "
                                   f'(cond/uncond) masks (blocks["{first.block}"])'), text
    assert "pipeline_kwargs" not in text


@pytest.mark.skipif(not EMBEDDED_WEIGHTS.is_file(), reason="embedded weights are absent")
def test_another_architecture_asks_for_force_and_applies_with_it(tmp_path: Path) -> None:
    sched = load_schedule(EXAMPLE)
    other = dataclasses.replace(sched, model=dataclasses.replace(sched.model, fingerprint="sha256:" + "0" * 64))
    path = other.save(tmp_path / "other.yaml")
    code, text = _run(["--schedule", str(path), "--out", str(tmp_path / "a.png")])
    assert code == 2 and "pass --force to apply it anyway" in text and "force=True" not in text, text
    assert "\n" not in text.strip() and not (tmp_path / "a.png").exists()
    code, text = _run(["--schedule", str(path), "--out", str(tmp_path / "a.png"), "--force"])
    assert code == 0, text
    assert "warning: model.fingerprint:" in text and "applying anyway because of --force" in text, text
    assert Image.open(tmp_path / "a.png").size == (32, 32)
