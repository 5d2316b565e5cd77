"""The ``scenes`` trainer (training/scenes.py): seeded, resumable, on a given autoencoder, low-noise share."""

from __future__ import annotations

import numpy as np
import pytest

from cachesearch.embedded import scenes


def test_training_script_is_seeded_reproducible_and_resumes(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import torch
    from safetensors.torch import load_file

    from training import scenes as _train

    monkeypatch.setattr(_train, "_VAE_STATS_N", 4)
    train = _train.train

    def run(name: str, minutes: float | None = None) -> dict[str, torch.Tensor]:
        out = tmp_path / name
        train(out, steps=2, vae_steps=1, train_set=4, batch_size=2, vae_batch_size=2, checkpoint_every=5,
              minutes=minutes, log=lambda _: None)
        info = json.loads((out / "training.json").read_text())
        assert info["vae"]["steps"] == 1 and info["train_set"] == 4 and "hardware" in info
        assert info["unet_steps"] == (1 if minutes == 0 else 2) and info["stopped_early"] == (minutes == 0)
        return load_file(out / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors")

    a, b = run("a"), run("b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    run("c", minutes=0)  # out of time after one UNet step (the autoencoder gets 20 % of 0 s: one step)
    resumed = run("c")  # resumes at UNet step 1 with the stored autoencoder and set: the same weights
    assert all(torch.equal(a[k], resumed[k]) for k in a)
    # continuing from a pipeline folder keeps its autoencoder (no new one is trained) and starts from its UNet
    d = tmp_path / "d"
    train(d, steps=1, train_set=4, batch_size=2, init_from=tmp_path / "a" / "pipeline", log=lambda _: None)
    info = json.loads((d / "training.json").read_text())
    assert info["vae"]["from"] == "pipeline/vae" and not (d / "vae.pt").exists() and info["init_from"] == "pipeline"
    vae_a, vae_d = (load_file(run_dir / "pipeline" / "vae" / "diffusion_pytorch_model.safetensors")
                    for run_dir in (tmp_path / "a", d))
    assert vae_a.keys() == vae_d.keys() and all(torch.equal(vae_a[k], vae_d[k]) for k in vae_a)


def test_training_on_a_given_sub_pixel_autoencoder_follows_its_channels_and_loads(tmp_path) -> None:
    import json

    import torch

    from cachesearch.embedded.scenes._components import vae_config
    from cachesearch.embedded.scenes._vae import SubpixelAutoencoderKL
    from training import scenes as _train

    torch.manual_seed(0)
    SubpixelAutoencoderKL(**vae_config(64, latent_channels=8)).save_pretrained(tmp_path / "ae" / "vae")
    # a 4-channel pipeline to start from: all its UNet weights but conv_in/conv_out fit the 8-channel UNet
    _train.train(tmp_path / "four", steps=1, vae_steps=1, train_set=2, batch_size=2, vae_batch_size=2,
                 log=lambda _: None)
    out = tmp_path / "eight"
    _train.train(out, steps=1, train_set=2, batch_size=2, vae_dir=tmp_path / "ae" / "vae",
                 init_from=tmp_path / "four" / "pipeline", log=lambda _: None)
    info = json.loads((out / "training.json").read_text())
    assert info["vae"]["from"] == "ae/vae" and info["latent_channels"] == 8
    assert sorted(info["init_fresh"]) == ["conv_in.weight", "conv_out.bias", "conv_out.weight"]
    pipe = scenes.load_pipeline(path=out / "pipeline")
    assert type(pipe.vae) is SubpixelAutoencoderKL and pipe.unet.config.in_channels == 8
    image = pipe("a red circle and a blue square on a green background", num_inference_steps=2,
                 generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    assert image.shape == (64, 64, 3) and np.isfinite(image).all()
    with pytest.raises(ValueError, match="do not fit"):
        _train._load_matching(torch.nn.Linear(2, 2), {"weight": torch.zeros(2, 2)})


def test_low_t_share_draws_that_share_of_training_noise_levels_below_the_cap(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from diffusers import DDIMScheduler

    from training import scenes as _train

    monkeypatch.setattr(_train, "_VAE_STATS_N", 4)
    seen: list[int] = []
    add_noise = DDIMScheduler.add_noise
    monkeypatch.setattr(DDIMScheduler, "add_noise", lambda self, z, n, t: seen.extend(t.tolist())
                        or add_noise(self, z, n, t))
    _train.train(tmp_path / "low", steps=3, vae_steps=1, train_set=4, batch_size=8, vae_batch_size=2,
                 low_t_frac=1.0, low_t_max=3, textures="coarse", log=lambda _: None)
    assert len(seen) == 24 and max(seen) < 3
    info = json.loads((tmp_path / "low" / "training.json").read_text())
    assert (info["low_t_frac"], info["low_t_max"], info["textures"]) == (1.0, 3, "coarse")
    seen.clear()
    _train.train(tmp_path / "all", steps=3, vae_steps=1, train_set=4, batch_size=8, vae_batch_size=2,
                 log=lambda _: None)
    assert max(seen) >= 3 and "low_t_frac" not in json.loads((tmp_path / "all" / "training.json").read_text())
