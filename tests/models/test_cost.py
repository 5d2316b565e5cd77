"""Tests of the analytic per-block cost (FlopCounterMode MACs, attributed by module hooks)."""

from __future__ import annotations

import pytest
import torch

from cachesearch.adapters.unet2d import unet2d_example_inputs, unet2d_layers
from cachesearch.models._cost import MacsReport, module_macs, unet2d_costs
from cachesearch.models._presets import build_arch_pipeline
from tests._tiny import tiny_sd_pipeline


def _stages(unet: torch.nn.Module) -> list[str]:
    return (
        [f"down_blocks.{i}" for i in range(len(unet.down_blocks))]
        + ["mid_block"]
        + [f"up_blocks.{i}" for i in range(len(unet.up_blocks))]
    )


def _children(unet: torch.nn.Module) -> dict[str, list[str]]:
    """Layers per stage (components inside an attention layer are checked separately)."""
    stages = set(_stages(unet))
    kids: dict[str, list[str]] = {}
    for path, parent, _role, _module in unet2d_layers(unet):
        if parent in stages:
            kids.setdefault(parent, []).append(path)
    return kids


def _components(unet: torch.nn.Module) -> dict[str, list[str]]:
    stages = set(_stages(unet))
    out: dict[str, list[str]] = {}
    for path, parent, _role, _module in unet2d_layers(unet):
        if parent is not None and parent not in stages:
            out.setdefault(parent, []).append(path)
    return out


def _check_sums(unet: torch.nn.Module, report: MacsReport) -> None:
    """Stages + other_macs == total, and each stage == the sum of its layers, within 2 %."""
    stages = _stages(unet)
    stage_sum = sum(report.per_module[s] for s in stages)
    assert report.total_macs > 0
    assert abs(stage_sum + report.other_macs - report.total_macs) <= 0.02 * report.total_macs
    for stage, kids in _children(unet).items():
        kid_sum = sum(report.per_module[k] for k in kids)
        assert abs(kid_sum - report.per_module[stage]) <= 0.02 * report.per_module[stage], stage
    for layer, parts in _components(unet).items():  # attn1 + attn2 + ff: all but the norms and projections
        assert 0 < sum(report.per_module[c] for c in parts) < report.per_module[layer], layer
        # Nothing with a FLOP formula runs between a stage's layers (skip concatenation and up-sampling
        # interpolation are element-wise), so the layers account for the stage exactly.
        assert kid_sum == report.per_module[stage], stage


def test_tiny_unet_stage_and_layer_sums_on_cpu_equal_meta() -> None:
    unet = tiny_sd_pipeline(blocks=3).unet
    extra = ["conv_in", "time_embedding", "conv_out"]
    paths = [p for p, *_ in unet2d_layers(unet)] + extra
    inputs = unet2d_example_inputs(unet)
    report = module_macs(unet, lambda: unet(**inputs), paths)
    _check_sums(unet, report)
    # other_macs is exactly the glue around the stages.
    glue = sum(report.per_module[p] for p in extra)
    assert glue == report.total_macs - sum(report.per_module[s] for s in _stages(unet))
    assert report.other_macs == 0  # the glue was requested too, so nothing is left over
    macs, other = unet2d_costs(unet)  # meta replica
    macs_cpu, other_cpu = unet2d_costs(unet, on_meta=False)
    assert macs == macs_cpu and other == other_cpu
    assert {p: macs[p] for p in macs} == {p: report.per_module[p] for p in macs}
    assert set(macs) == {p for p, *_ in unet2d_layers(unet)}
    assert other == sum(report.per_module[p] for p in extra)


def _attention_macs(n: int, c: int, ctx_len: int, ctx_dim: int) -> int:
    """MACs of one SD-1.x Transformer2DModel (conv proj_in/out, one BasicTransformerBlock with GEGLU FF)."""
    projections = 20 * n * c * c  # proj_in 1 + self q,k,v,o 4 + cross q,o 2 + GEGLU 8 + FF out 4 + proj_out 1
    self_attention = 2 * n * n * c  # QK^T and AV over all heads
    cross_kv = 2 * ctx_len * ctx_dim * c
    cross_attention = 2 * n * ctx_len * c
    return projections + self_attention + cross_kv + cross_attention


def test_sd15_unet_on_meta_at_512px() -> None:
    unet = build_arch_pipeline("sd15", device="meta", components="unet")
    extra = ["conv_in", "time_embedding", "conv_out"]
    paths = [p for p, *_ in unet2d_layers(unet)] + extra
    inputs = unet2d_example_inputs(unet)  # 64x64 latents = 512 px, batch 1, 77 tokens
    assert inputs["sample"].shape == (1, 4, 64, 64) and inputs["sample"].device.type == "meta"
    report = module_macs(unet, lambda: unet(**inputs), paths)
    _check_sums(unet, report)
    n = 64 * 64
    assert report.per_module["conv_in"] == n * 4 * 320 * 9
    assert report.per_module["conv_out"] == n * 320 * 4 * 9
    assert report.per_module["time_embedding"] == 320 * 1280 + 1280 * 1280
    assert report.per_module["down_blocks.0.resnets.0"] == 2 * n * 320 * 320 * 9 + 1280 * 320
    assert report.per_module["down_blocks.0.attentions.0"] == _attention_macs(n, 320, 77, 768)
    assert report.per_module["mid_block.attentions.0"] == _attention_macs(8 * 8, 1280, 77, 768)
    assert 350e9 < report.total_macs < 450e9  # ~0.4 TMAC per UNet call at 512 px
    assert all(p.device.type == "meta" for p in unet.parameters())


def test_sdxl_unet_on_meta_stage_sums() -> None:
    unet = build_arch_pipeline("sdxl", device="meta", components="unet")
    macs, other = unet2d_costs(unet, height=64, width=64)
    stage_sum = sum(macs[s] for s in _stages(unet))
    for stage, kids in _children(unet).items():
        assert sum(macs[k] for k in kids) == macs[stage], stage
    # glue: conv_in + conv_out (64x64, 4 <-> 320 channels), time embedding, SDXL's added text/time embedding
    time_embedding = 320 * 1280 + 1280 * 1280
    add_embedding = 2816 * 1280 + 1280 * 1280
    assert other == 2 * 64 * 64 * 4 * 320 * 9 + time_embedding + add_embedding
    assert stage_sum > 100 * other


def test_nested_paths_and_other_macs() -> None:
    unet = tiny_sd_pipeline(blocks=3).unet
    inputs = unet2d_example_inputs(unet, height=16, width=16)
    alone = module_macs(unet, lambda: unet(**inputs), ["down_blocks.1"])
    nested = module_macs(
        unet,
        lambda: unet(**inputs),
        ["down_blocks.1.attentions.0", "down_blocks.1", "down_blocks.1.resnets.0"],
    )
    assert nested.total_macs == alone.total_macs
    assert nested.per_module["down_blocks.1"] == alone.per_module["down_blocks.1"]
    assert 0 < nested.per_module["down_blocks.1.attentions.0"] < nested.per_module["down_blocks.1"]
    assert nested.other_macs == alone.other_macs == alone.total_macs - alone.per_module["down_blocks.1"]
    assert list(nested.per_module) == [
        "down_blocks.1.attentions.0",
        "down_blocks.1",
        "down_blocks.1.resnets.0",
    ]


def test_module_called_twice_accumulates_and_unused_is_zero() -> None:
    lin = torch.nn.Linear(8, 8)
    unused = torch.nn.Linear(8, 8)
    model = torch.nn.ModuleDict({"lin": lin, "unused": unused})
    x = torch.zeros(4, 8)
    report = module_macs(model, lambda: lin(lin(x)), ["lin", "unused"])
    assert report.per_module == {"lin": 2 * 4 * 8 * 8, "unused": 0}
    assert report.total_macs == 2 * 4 * 8 * 8 and report.other_macs == 0
    with pytest.raises(AttributeError):
        report.total_macs = 0  # type: ignore[misc]  # frozen


def test_bad_paths() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="no submodule"):
        module_macs(model, lambda: None, ["1"])
    with pytest.raises(ValueError, match="duplicate"):
        module_macs(model, lambda: None, ["0", "0"])
    with pytest.raises(ValueError, match="non-empty"):
        module_macs(model, lambda: None, [""])
    with pytest.raises(ValueError, match="single string"):
        module_macs(model, lambda: None, "0")
    # hooks are removed even when forward fails
    with pytest.raises(RuntimeError):
        module_macs(model, lambda: model(torch.zeros(1, 3)), ["0"])
    assert not model[0]._forward_hooks and not model[0]._forward_pre_hooks


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_one_attention_layer_equals_the_hand_formula_on_every_device(device):
    """QKᵀ and AV per head, whatever kernel runs: b·h·Lq·Lk·(d_qk + d_v), plus the four projections."""
    from diffusers.models.attention_processor import Attention

    b, lq, lk, qdim, cdim, heads, dh = 2, 64, 7, 32, 24, 4, 8
    inner = heads * dh
    with torch.device(device):
        attn = Attention(query_dim=qdim, cross_attention_dim=cdim, heads=heads, dim_head=dh).eval()
        x = torch.randn(b, lq, qdim)
        ctx = torch.randn(b, lk, cdim)
    report = module_macs(attn, lambda: attn(x, encoder_hidden_states=ctx), ["to_q", "to_k", "to_v", "to_out.0"])
    projections = b * lq * qdim * inner + 2 * b * lk * cdim * inner + b * lq * inner * qdim
    attention = b * heads * lq * lk * (dh + dh)
    assert report.per_module == {"to_q": b * lq * qdim * inner, "to_k": b * lk * cdim * inner,
                                 "to_v": b * lk * cdim * inner, "to_out.0": b * lq * inner * qdim}
    assert report.total_macs == projections + attention
    assert report.other_macs == attention
