"""Tests of the sub-pixel ``scenes`` autoencoder class (its trainer: tests/training/test_scenes_autoencoder.py)."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import AutoencoderKL
from diffusers.models.upsampling import Upsample2D

from cachesearch.embedded.scenes._components import vae_config
from cachesearch.embedded.scenes._vae import SubpixelAutoencoderKL, SubpixelUpsample2D, load_vae


def _uniform_field(channels: int) -> torch.Tensor:
    """A latent-like feature map that is the same in every cell (what a texture whose period divides the cell
    gives the decoder), with a varying channel profile."""
    return torch.linspace(-1, 1, channels)[None, :, None, None].expand(1, channels, 6, 6).contiguous()


def test_a_subpixel_upsampler_draws_inside_a_cell_where_nearest_neighbour_cannot() -> None:
    torch.manual_seed(0)
    x = _uniform_field(8)
    inner = (slice(None), slice(None), slice(4, 8), slice(4, 8))  # away from the zero-padded border
    stock = Upsample2D(8, use_conv=True, out_channels=8)
    with torch.no_grad():
        assert stock(x)[inner].std(dim=(2, 3)).max() < 1e-6  # uniform in, uniform out: no pattern possible
        sub = SubpixelUpsample2D(8)
        torch.nn.init.normal_(sub.conv.weight)  # trained weights: each sub-position has its own filter
        y = sub(x)
    assert y.shape == (1, 8, 12, 12)
    assert y[inner].std(dim=(2, 3)).min() > 1e-3
    # a 2-px period pattern: the same value every other pixel
    assert torch.allclose(y[..., 4:8:2, 4:8:2], y[..., 6:10:2, 6:10:2], atol=1e-6)


def test_icnr_start_is_convolution_then_nearest_neighbour() -> None:
    torch.manual_seed(0)
    base = torch.nn.Conv2d(4, 4, 3, padding=1)
    sub = SubpixelUpsample2D(4)
    sub.icnr_(base)
    x = torch.randn(2, 4, 5, 7)
    with torch.no_grad():
        want = torch.nn.functional.interpolate(base(x), scale_factor=2, mode="nearest")
        assert torch.allclose(sub(x), want, atol=1e-6)


def test_subpixel_autoencoder_round_trips_through_a_folder_and_converts_a_stock_one(tmp_path) -> None:
    torch.manual_seed(0)
    stock = AutoencoderKL(**vae_config(64, latent_channels=8)).eval()
    vae = SubpixelAutoencoderKL.from_nearest(stock).eval()
    ups = [u for b in vae.decoder.up_blocks for u in (b.upsamplers or ())]
    assert len(ups) == 2 and all(isinstance(u, SubpixelUpsample2D) for u in ups)
    kept = {k: v for k, v in stock.state_dict().items() if "upsamplers" not in k}
    assert all(torch.equal(vae.state_dict()[k], v) for k, v in kept.items())
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mean
        assert z.shape == (2, 8, 16, 16)
        assert torch.equal(z, stock.encode(x).latent_dist.mean)  # the encoder (so the latents) is the stock one
        vae.save_pretrained(tmp_path / "vae")
        assert json.loads((tmp_path / "vae" / "config.json").read_text())["_class_name"] == "SubpixelAutoencoderKL"
        again = load_vae(str(tmp_path / "vae")).eval()
        assert type(again) is SubpixelAutoencoderKL
        assert torch.equal(again.decode(z).sample, vae.decode(z).sample)
        stock.save_pretrained(tmp_path / "stock")
        assert type(load_vae(str(tmp_path / "stock"))) is AutoencoderKL


def test_residual_shortcut_carries_sub_cell_detail_from_the_first_step(tmp_path) -> None:
    torch.manual_seed(0)
    vae = SubpixelAutoencoderKL(**vae_config(64, latent_channels=8), residual_shortcut=True).eval()
    with torch.no_grad():  # silence the learned paths: what is left is the shortcut alone
        for conv in (vae.quant_conv, vae.decoder.conv_out):
            conv.weight.zero_()
            conv.bias.zero_()
        x = torch.rand(1, 3, 64, 64) * 2 - 1
        z = vae.encode(x).latent_dist.mean
        rec = vae.decode(z).sample
    # the latent is the mean of each group of 6 of a 4x4 cell's 48 (colour, position) values; the decoder puts
    # each group's mean back on its positions
    cells = torch.nn.functional.pixel_unshuffle(x, 4).view(1, 8, 6, 16, 16)
    assert torch.allclose(z, cells.mean(2), atol=1e-6)
    want = torch.nn.functional.pixel_shuffle(cells.mean(2, keepdim=True).expand(-1, -1, 6, -1, -1)
                                             .reshape(1, 48, 16, 16), 4)
    assert torch.allclose(rec, want, atol=1e-6)
    # so 4 px stripes reach the reconstruction (a stock decoder's nearest-neighbour path cannot draw them)
    stripes = torch.zeros(1, 3, 64, 64)
    stripes[:, :, 0::4] = stripes[:, :, 1::4] = 1.0
    with torch.no_grad():
        out = vae.decode(vae.encode(stripes * 2 - 1).latent_dist.mean).sample
    assert out[0, 0, 8:56:4, 8:56].mean() > out[0, 0, 10:56:4, 8:56].mean() + 0.5
    vae.save_pretrained(tmp_path / "vae")
    assert load_vae(str(tmp_path / "vae")).config.residual_shortcut is True
    with pytest.raises(ValueError, match="residual_shortcut"):
        SubpixelAutoencoderKL(**vae_config(64, latent_channels=5), residual_shortcut=True)
