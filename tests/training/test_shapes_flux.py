"""The ``shapes-flux`` trainer (training/shapes_flux.py): seeded, resumable, its command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch


def _fake_scenes_run(folder) -> None:
    from diffusers import AutoencoderKL

    from cachesearch.embedded.scenes._components import vae_config
    from training._loop import save_ckpt
    from training.scenes import _batch

    folder.mkdir()
    torch.manual_seed(0)
    vae = AutoencoderKL(**vae_config(64))
    save_ckpt(folder / "vae.pt", {"state_dict": vae.state_dict(), "stats": {"latent_std": 1.0}})
    x, caps = _batch(np.random.default_rng(0), 4, 64)
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mean
    save_ckpt(folder / "latents.pt", {"latents": z, "captions": caps})


def test_training_script_is_seeded_reproducible_and_resumes(tmp_path) -> None:
    from safetensors.torch import load_file

    from training.shapes_flux import train

    _fake_scenes_run(tmp_path / "scenes")

    def run(name: str, minutes: float | None = None) -> dict[str, torch.Tensor]:
        out = tmp_path / name
        train(out, scenes_run=tmp_path / "scenes", steps=2, batch_size=2, checkpoint_every=5, minutes=minutes,
              log=lambda _: None)
        info = json.loads((out / "training.json").read_text())
        assert info["data"] == "scenes" and "hardware" in info
        assert info["steps"] == (1 if minutes == 0 else 2) and info["stopped_early"] == (minutes == 0)
        return load_file(out / "pipeline" / "transformer" / "diffusion_pytorch_model.safetensors")

    a, b = run("a"), run("b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    stopped = run("c", minutes=0)  # out of time after one step: checkpointed
    assert any(not torch.equal(a[k], stopped[k]) for k in a)
    resumed = run("c")  # picks up at step 1: the same weights as the uninterrupted run
    assert all(torch.equal(a[k], resumed[k]) for k in a)


def test_training_cli_passes_ema_decay_and_rejects_bad_values(tmp_path, monkeypatch, capsys) -> None:
    from training import shapes_flux as _train

    seen: dict = {}
    monkeypatch.setattr(_train, "train", lambda out, **kw: seen.update(kw))
    _train.main(["--out", str(tmp_path), "--ema-decay", "0.999"])
    assert seen["ema_decay"] == 0.999
    for bad in ("1.0", "0", "-0.5"):
        with pytest.raises(SystemExit) as e:
            _train.main(["--out", str(tmp_path), "--ema-decay", bad])
        assert e.value.code == 2 and "--ema-decay must be in (0, 1)" in capsys.readouterr().err
