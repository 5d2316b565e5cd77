"""Denoiser-only presets: published configurations built on the meta device, their cost tables (``cachesearch
blocks``), MACs with frames, and the meta-device MoE routing checked against a real run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cachesearch.adapters import adapter_for
from cachesearch.cli import app
from cachesearch.models import ModelLoadError, build_arch_pipeline, load_model
from cachesearch.models._block_costs import block_costs
from cachesearch.models._cost import denoiser_costs
from cachesearch.models._presets_denoisers import DENOISER_PRESETS, build_preset_denoiser, preset

REQUIRED = ("wan2.1-1.3b", "wan2.1-14b", "wan2.2-5b", "wan2.2-a14b", "qwen-image", "flux2-dev", "hunyuanvideo",
            "ltx-video", "cogvideox-5b", "z-image", "sana", "hidream")


def test_every_required_model_has_a_preset_built_with_its_published_config():
    assert set(REQUIRED) <= set(DENOISER_PRESETS)
    for name in DENOISER_PRESETS:
        spec = preset(name)
        model = build_preset_denoiser(name)
        assert all(p.device.type == "meta" for p in model.parameters())
        for key, value in spec.config.items():  # every published key reached the constructor unchanged
            got = model.config[key]
            assert (list(got) if isinstance(got, (list, tuple)) else got) == (
                list(value) if isinstance(value, (list, tuple)) else value), (name, key)
        billions = sum(p.numel() for p in model.parameters()) / 1e9
        assert abs(billions - spec.params_b) <= 0.12 * spec.params_b, (name, billions, spec.params_b)
        assert adapter_for(model).block_space(model).names()  # an adapter covers it at block granularity
        assert spec.source and (spec.frames is None) == (name not in ("wan2.1-1.3b", "wan2.1-14b", "wan2.2-5b",
                                                                      "wan2.2-a14b", "hunyuanvideo", "ltx-video",
                                                                      "cogvideox-5b"))


def test_wan_costs_count_every_latent_frame_at_the_published_size():
    c81 = block_costs("arch:wan2.1-1.3b")
    c33 = block_costs("arch:wan2.1-1.3b", frames=33)
    assert (c81.height, c81.width, c81.frames, c81.latent) == (480, 832, 81, (60, 104, 21))
    assert c33.latent == (60, 104, 9) and c81.family == "wan" and c81.experts == 1
    ffn81, ffn33 = c81.space.get("blocks.0.ffn").macs, c33.space.get("blocks.0.ffn").macs
    assert ffn81 * 9 == ffn33 * 21  # the feed-forward is per token: linear in the latent frames
    attn81, attn33 = c81.space.get("blocks.0.attn1").macs, c33.space.get("blocks.0.attn1").macs
    assert attn81 / attn33 > 21 / 9  # self-attention over every frame's tokens grows faster
    assert preset("wan2.2-a14b").experts == 2 and preset("wan2.2-a14b").config == preset("wan2.1-14b").config


def test_meta_moe_routing_counts_the_macs_of_the_real_routing():
    """HiDream's mixture of experts routes with data-dependent ops that meta tensors cannot run; the meta count
    spreads the tokens evenly over the experts, which must give exactly the MACs of the real (data) routing."""
    import diffusers

    torch.manual_seed(0)
    tiny = diffusers.HiDreamImageTransformer2DModel(
        patch_size=2, in_channels=4, out_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=8,
        num_attention_heads=4, caption_channels=[8, 4], text_emb_dim=8, num_routed_experts=4,
        num_activated_experts=2, axes_dims_rope=(4, 2, 2), max_resolution=(32, 32), llama_layers=(0, 1),
        force_inference_output=True).eval()
    meta_macs, meta_other = denoiser_costs(tiny, height=16, width=16)
    real_macs, real_other = denoiser_costs(tiny, height=16, width=16, on_meta=False)
    assert meta_macs == real_macs and meta_other == real_other
    assert block_costs("arch:hidream").total > 0  # the published 17 B model, on meta


def test_denoiser_only_presets_are_refused_as_pipelines_in_one_line():
    with pytest.raises(ModelLoadError, match=r"^arch:wan2\.1-14b is a denoiser-only preset .*cachesearch blocks"):
        load_model("arch:wan2.1-14b")
    with pytest.raises(ValueError, match="device='meta'"):
        build_arch_pipeline("arch:sana", device="cpu", components="denoiser")


def test_the_blocks_command_prints_and_writes_the_cost_table(tmp_path: Path):
    out = tmp_path / "costs.json"
    result = CliRunner().invoke(app, ["blocks", "--model", "arch:wan2.1-1.3b", "--frames", "33", "--json", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "480×832 px, 33 frames (latents 60×104×9 frames)" in result.output and "blocks.29" in result.output
    data = json.loads(out.read_text())
    assert len(data["blocks"]) == 30 and data["macs_per_call"] == data["other_macs"] + sum(
        b["macs"] for b in data["blocks"])
    bad = CliRunner().invoke(app, ["blocks", "--model", "arch:sana", "--frames", "9"])
    assert bad.exit_code == 2 and "--frames: arch:sana renders images" in bad.output
