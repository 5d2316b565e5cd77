"""The ``shapes`` trainer (training/shapes.py): seeded and reproducible."""

from __future__ import annotations

import pytest
import torch


def test_training_script_is_seeded_and_reproducible(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from safetensors.torch import load_file

    from training import shapes as _train

    monkeypatch.setattr(_train, "_VAE_STATS_N", 4)
    train = _train.train

    def run(name: str) -> dict[str, torch.Tensor]:
        out = tmp_path / name
        train(out, seed=0, steps=2, vae_steps=1, batch_size=2, vae_batch_size=2, checkpoint_every=100,
              log=lambda _: None)
        info = json.loads((out / "training.json").read_text())
        assert info["unet_steps"] == 2 and info["vae"]["steps"] == 1 and "hardware" in info
        assert (out / "pipeline" / "model_index.json").is_file()
        return load_file(out / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors")

    a, b = run("a"), run("b")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
