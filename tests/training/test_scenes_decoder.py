"""The ``scenes`` decoder fine-tune (training/scenes_decoder.py)."""

from __future__ import annotations


def test_decoder_fine_tune_keeps_the_encoder_and_resumes_bit_exact(tmp_path) -> None:
    import json

    import torch
    from diffusers import AutoencoderKL
    from safetensors.torch import load_file

    from cachesearch.embedded.scenes._components import vae_config
    from training.scenes_decoder import train_decoder

    torch.manual_seed(0)
    src = tmp_path / "pipe"
    AutoencoderKL(**vae_config(64)).save_pretrained(src / "vae")
    start = load_file(src / "vae" / "diffusion_pytorch_model.safetensors")

    def run(name: str, minutes: float | None = None) -> dict[str, torch.Tensor]:
        out = tmp_path / name
        info = train_decoder(src, out, steps=2, batch_size=2, checkpoint_every=5, minutes=minutes, ceiling_n=2,
                             log=lambda _: None)
        assert json.loads((out / "decoder.json").read_text())["steps"] == info["steps"]
        assert info["steps"] == (1 if minutes == 0 else 2) and set(info["ceiling_after"]) >= {"fg_acc", "rgb_rmse"}
        return load_file(out / "vae" / "diffusion_pytorch_model.safetensors")

    a = run("a")
    enc = [k for k in a if k.startswith(("encoder.", "quant_conv."))]
    dec = [k for k in a if k.startswith(("decoder.", "post_quant_conv."))]
    assert enc and dec and len(enc) + len(dec) == len(a)
    assert all(torch.equal(a[k], start[k]) for k in enc)  # latents, scaling and the denoisers stay valid
    assert any(not torch.equal(a[k], start[k]) for k in dec)
    run("c", minutes=0)  # out of time after one step
    resumed = run("c")
    assert all(torch.equal(a[k], resumed[k]) for k in a)
