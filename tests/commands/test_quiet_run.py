"""A whole ``cachesearch run`` with two worker processes, output to a pipe: plain progress lines, the metric
fallback said once, no loading bars, no accelerate or Ray noise, no traceback (issue 31 items 5 and 7). And a
pipeline loads without diffusers' accelerate warning when accelerate is absent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cachesearch.embedded import shapes

ROOT = Path(__file__).resolve().parents[2]
EMBEDDED_WEIGHTS = shapes.pipeline_path() / "unet" / "diffusion_pytorch_model.safetensors"
pytestmark = pytest.mark.skipif(not EMBEDDED_WEIGHTS.is_file(), reason="embedded weights are absent")
NOISE = ("Loading pipeline components", "Loading weights", "Cannot initialize model with low cpu memory usage",
         "Token authentication is enabled", "Traceback", "gcs_client")


def test_a_run_through_a_pipe_prints_plain_lines_and_no_noise(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "cachesearch.cli", "run", "--name", "q", "--trials", "4", "--steps", "4",
           "--n-train", "2", "--n-heldout", "2", "--timeout", "0", "--workers", "2", "--out", str(tmp_path / "runs"),
           "--cache-dir", str(tmp_path / "cache")]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "100"}
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=900,
                          cwd=tmp_path)
    out = done.stdout
    assert done.returncode == 0, out[-3000:]
    for noise in NOISE:
        assert noise not in out, (noise, out[-3000:])
    assert out.count("unavailable") <= 1, out  # the metric fallback: one note from the driver, none per worker
    lines = out.splitlines()
    assert "loading embedded …" in lines and any(line.startswith("searching: 0/4 trials") for line in lines), out
    assert any(line.startswith("searched: 4 trials") for line in lines), out
    assert "stopped: trial budget reached (4 finished of --trials 4)" in " ".join(lines)
    assert "━" not in out and "\x1b[" not in out  # no bar, no terminal escapes in a pipe


def test_loading_without_accelerate_says_nothing(monkeypatch, capfd) -> None:
    import diffusers.models.modeling_utils as modeling_utils
    import diffusers.pipelines.pipeline_utils as pipeline_utils
    import diffusers.utils

    from cachesearch.models._loaders import load_model

    for module in (modeling_utils, pipeline_utils, diffusers.utils):
        monkeypatch.setattr(module, "is_accelerate_available", lambda: False)
    load_model("embedded")
    err = capfd.readouterr().err
    assert "Cannot initialize model with low cpu memory usage" not in err and "Loading" not in err, err
