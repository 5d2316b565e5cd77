"""`benchmarks/scenes_curvature.py`: the closed-form DDIM retention of Gaussian grain against diffusers' own
``DDIMScheduler.step`` driven by that grain's exact posterior, and the CLI end to end on two held-out images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from scenes_curvature import ddim_retention  # noqa: E402

SCHEDULER = ROOT / "src" / "cachesearch" / "embedded" / "scenes" / "pipeline" / "scheduler"


def _diffusers_sample(scheduler: DDIMScheduler, steps: int, grain_std: float) -> float:
    """Run diffusers' DDIM loop on x_T = 1 with the v-prediction of the grain's exact posterior mean."""
    c = grain_std**2
    scheduler.set_timesteps(steps)
    x = torch.ones(1, dtype=torch.float64)
    for t in scheduler.timesteps:
        a2 = scheduler.alphas_cumprod[int(t)].double()
        a, s = a2.sqrt(), (1 - a2).sqrt()
        x0 = a * c * x / (a2 * c + s * s)
        eps = (x - a * x0) / s
        v = a * eps - s * x0
        x = scheduler.step(v, t, x).prev_sample
    return float(x) / grain_std


@pytest.mark.parametrize("spacing", ["trailing", "leading"])
@pytest.mark.parametrize("steps", [10, 30, 50])
@pytest.mark.parametrize("grain", [0.1, 0.3])
def test_retention_matches_diffusers_ddim(spacing, steps, grain):
    sched = DDIMScheduler.from_pretrained(SCHEDULER, timestep_spacing=spacing)
    sched.alphas_cumprod = sched.alphas_cumprod.double()
    oracle = _diffusers_sample(sched, steps, grain)
    assert ddim_retention(sched, steps, grain) == pytest.approx(oracle, rel=1e-6)  # step() keeps some float32


def test_retention_grows_with_steps_towards_one():
    sched = DDIMScheduler.from_pretrained(SCHEDULER)
    r = [ddim_retention(sched, k, 0.2) for k in (10, 20, 50, 200, 1000)]
    assert all(a < b for a, b in zip(r, r[1:], strict=False)) and r[0] > 0 and 0.97 < r[-1] < 1.0


def test_cli_on_two_heldout_images(tmp_path):
    out = tmp_path / "curv.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scenes_curvature.py"), "--n", "2",
                           "--guidance", "5", "--spacing", "trailing", "--grain", "0.3", "--threads", "1",
                           "--out", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["pipeline"] == "src/cachesearch/embedded/scenes/pipeline" and doc["reference_steps"] == 50
    (row,) = doc["rows"]
    for k in (30, 20, 10):
        d = row[f"steps-{k}"]
        assert len(d["per_image"]) == 2 and d["bench4"] == pytest.approx(sum(d["per_image"]) / 2, abs=1e-4)
    (g,) = doc["grain_bound"]
    assert 0 < g["retention"]["steps-10"] < g["retention"]["steps-50"] < 1 and g["grain_vs_none"] > 0
    assert str(ROOT) not in out.read_text()


def test_cli_refuses_a_flow_matching_model(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scenes_curvature.py"), "--model",
                           "embedded:shapes-flux", "--n", "1", "--out", str(tmp_path / "x.json")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2 and "--model" in proc.stderr and "DDIM" in proc.stderr
