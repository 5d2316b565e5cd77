"""``cachesearch run`` on a video model end to end: the tiny random-weight Wan 2.1 text-to-video pipeline
(``arch:wan2.1-tiny``), with classifier-free guidance as two denoiser calls per step; the report and the exported
schedules are written, quality is labelled meaningless, and an exported file applies to a fresh pipeline."""

from __future__ import annotations

from pathlib import Path

import optuna
import torch
import yaml
from typer.testing import CliRunner

from cachesearch.cli import app
from cachesearch.models._loaders import load_model
from cachesearch.schedule import load_schedule

runner = CliRunner()
optuna.logging.set_verbosity(optuna.logging.WARNING)
STEPS = 6


def test_run_on_the_tiny_wan_pipeline_writes_the_report_and_applicable_schedules(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    args = ["run", "--model", "arch:wan2.1-tiny", "--name", "wan", "--steps", str(STEPS), "--n-train", "2",
            "--n-heldout", "2", "--trials", "8", "--timeout", "0", "--workers", "1", "--out", str(out),
            "--cache-dir", str(tmp_path / "cache"), "-q"]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run_dir = out / "wan"
    report = (run_dir / "report.md").read_text()
    assert "random weights: quality numbers describe nothing real" in report
    assert "16×16 px, 9 frames" in report and "## Videos" in report and "temporal error" in report
    index = yaml.safe_load((run_dir / "schedules" / "index.yaml").read_text())
    assert index["schedules"]
    held = yaml.safe_load((run_dir / "heldout.json").read_text())["results"]
    assert all(r["temporal"] is not None and r["temporal"] >= 0 for r in held.values())
    assert sorted(p.name for p in (run_dir / "gallery").glob("reference-p0-f*.png")) == [
        "reference-p0-f0.png", "reference-p0-f1.png", "reference-p0-f2.png"]

    loaded = load_model("arch:wan2.1-tiny")
    contexts: list[str] = []
    original = loaded.denoiser.cache_context

    def record(name, *a, **k):
        contexts.append(name)
        return original(name, *a, **k)

    loaded.denoiser.cache_context = record
    for entry in index["schedules"]:
        sched = load_schedule(run_dir / "schedules" / entry["file"])
        assert sched.model.family == "wan" and sched.metrics.quality.heldout is not None
        contexts.clear()
        with sched.applied(loaded.pipe):
            video = loaded.pipe("a red ball rolls", height=16, width=16, num_frames=9, max_sequence_length=16,
                                output_type="pt", generator=torch.Generator().manual_seed(0),
                                **sched.pipeline_kwargs()).frames
        assert video.shape[:2] == (1, 9) and torch.isfinite(video).all()
        steps = sched.num_steps
        assert contexts == ["cond", "uncond"] * steps  # guidance: a cond and an uncond call per step
    first = run_dir / "schedules" / index["schedules"][0]["file"]
    clip = tmp_path / "clip.png"
    gen = runner.invoke(app, ["generate", "--model", "arch:wan2.1-tiny", "--prompt", "a red ball rolls",
                              "--schedule", str(first), "--out", str(clip)], catch_exceptions=False)
    assert gen.exit_code == 0 and "16x16, 9 frames" in gen.output, gen.output
    from PIL import Image

    assert Image.open(clip).n_frames == 9  # the clip as an animated PNG
