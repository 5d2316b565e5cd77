"""The textured ``scenes`` autoencoder's trainer (training/scenes_autoencoder.py): losses, folder, resume."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import AutoencoderKL

from cachesearch.embedded.scenes._components import vae_config
from cachesearch.embedded.scenes._vae import load_vae
from training.scenes_autoencoder import gradient_l1, palette_loss, train_autoencoder


def test_losses_are_zero_on_the_input_and_see_a_lost_texture() -> None:
    import numpy as np

    from training.scenes import _batch

    x, _ = _batch(np.random.default_rng(0), 4, 64)
    assert float(gradient_l1(x, x)) == 0.0
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1)
    assert float(gradient_l1(blurred, x)) > 0.01
    assert float(palette_loss(x, x)) < float(palette_loss(blurred, x))


def test_trainer_writes_a_loadable_folder_and_resumes_bit_exact(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import load_file

    from training import scenes_autoencoder as _autoencoder

    monkeypatch.setattr(_autoencoder, "_STATS_N", 4)

    def run(name: str, minutes: float | None = None, **kw) -> dict:
        out = tmp_path / name
        info = train_autoencoder(out, steps=2, batch_size=2, checkpoint_every=5, minutes=minutes, ceiling_n=2,
                                 log=lambda _: None, **kw)
        assert json.loads((out / "autoencoder.json").read_text())["steps"] == info["steps"]
        assert info["steps"] == (1 if minutes == 0 else 2) and info["class"] == "SubpixelAutoencoderKL"
        assert set(info["roundtrip_checker"]) >= {"fg_acc", "rgb_rmse"} and info["latent_channels"] == 8
        vae = load_vae(str(out / "vae"))
        assert vae.config.scaling_factor == pytest.approx(1 / info["latent_std"], rel=1e-3)
        return load_file(out / "vae" / "diffusion_pytorch_model.safetensors")

    a = run("a")
    run("c", minutes=0)  # out of time after one step
    resumed = run("c")
    assert a.keys() == resumed.keys() and all(torch.equal(a[k], resumed[k]) for k in a)
    # continuing from a folder: a fresh run that starts from those weights; a stock one converts (sub-pixel
    # upsamplers), but not into a shortcut autoencoder (its latents would change meaning)
    info = train_autoencoder(tmp_path / "d", steps=1, batch_size=2, ceiling_n=2, init_from=tmp_path / "a" / "vae",
                             log=lambda _: None)
    assert info["init_from"] == "a/vae" and info["residual_shortcut"] is True
    torch.manual_seed(1)
    AutoencoderKL(**vae_config(64, latent_channels=8)).save_pretrained(tmp_path / "stock")
    info = train_autoencoder(tmp_path / "f", steps=1, batch_size=2, ceiling_n=2, init_from=tmp_path / "stock",
                             shortcut=False, log=lambda _: None)
    assert info["class"] == "SubpixelAutoencoderKL" and info["residual_shortcut"] is False
    with pytest.raises(ValueError, match="residual_shortcut"):
        train_autoencoder(tmp_path / "g", steps=1, init_from=tmp_path / "stock", log=lambda _: None)
    with pytest.raises(ValueError, match="latent_channels"):
        train_autoencoder(tmp_path / "e", latent_channels=0, log=lambda _: None)
