"""`benchmarks/autoencoder_textures.py` on the two shipped pipelines' autoencoder folders (given with ``--vae``): it
runs and its JSON has one entry per folder (repo-relative keys) with every texture row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_texture_transfer_of_the_shipped_autoencoders(tmp_path):
    out = tmp_path / "tex.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    models = ROOT / "src" / "cachesearch" / "embedded"
    vaes = [arg for m in ("shapes_flux", "scenes") for arg in ("--vae", str(models / m / "pipeline" / "vae"))]
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "autoencoder_textures.py"), "--n", "2",
                           *vaes, "--out", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert set(doc["results"]) == {"src/cachesearch/embedded/shapes_flux/pipeline/vae",
                                   "src/cachesearch/embedded/scenes/pipeline/vae"}
    for entry in doc["results"].values():
        assert {"solid", "stripes", "checker", "stripes-period-4", "stripes-period-16"} <= set(entry["rows"])
        assert entry["rows"]["solid"]["corr"] is None and -1 <= entry["rows"]["stripes"]["corr"] <= 1
        assert set(entry["latent"]) == {"fine", "coarse"}
        assert all(0 < r["texture_rms"] < r["std"] for r in entry["latent"].values())
    assert str(ROOT) not in out.read_text()
