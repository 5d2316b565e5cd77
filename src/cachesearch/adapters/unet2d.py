"""Adapter for ``UNet2DConditionModel`` denoisers (SD 1.x/2.x, SDXL, the embedded model).

It lists the cacheable blocks at stage, layer and component granularity (``attn1``/``attn2``/``ff`` of each
transformer block inside an attention layer) in execution order, maps DeepCache branch ids
to the layers that still run on a cached step, registers the I/O contracts of diffusers' UNet block classes
and knows the UNet's example inputs, latent shape, default size and CFG behaviour.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..schedule import BlockInfo, BlockKind, BlockSpace, ScheduleError
from . import _blocks  # noqa: F401  (registers the Attention / FeedForward contracts)
from .base import BlockIO, DenoiserAdapter, register_adapter, register_block_io

__all__ = ["FAMILY", "UNet2DAdapter", "unet2d_block_space", "unet2d_example_inputs", "unet2d_layers"]

FAMILY = "unet2d"

# Down blocks return (hidden_states, skip tensors); Transformer2DModel returns (sample,) or a BaseOutput;
# ResnetBlock2D takes its input as ``input_tensor``; the rest take and return ``hidden_states``.
for _name in ("DownBlock2D", "CrossAttnDownBlock2D", "DownEncoder2D", "AttnDownBlock2D"):
    register_block_io(_name, BlockIO(return_hidden_states_index=0))
for _name in ("UNetMidBlock2DCrossAttn", "UNetMidBlock2D", "UpBlock2D", "CrossAttnUpBlock2D", "AttnUpBlock2D",
              "Downsample2D", "Upsample2D"):
    register_block_io(_name, BlockIO())
register_block_io("ResnetBlock2D", BlockIO(hidden_states_argument="input_tensor"))
register_block_io("Transformer2DModel", BlockIO(return_hidden_states_index=0))
# Components inside BasicTransformerBlock (Attention, FeedForward) are registered by ._blocks.

COMPONENTS = ("attn1", "attn2", "ff")
"""The cacheable components of each transformer block inside an attention layer (self-attn, cross-attn, MLP)."""


def _components(path: str, attention: torch.nn.Module) -> list[tuple[str, str]]:
    """``(path, role)`` of the attn1/attn2/ff modules inside one attention layer, in execution order."""
    out = []
    for k, block in enumerate(getattr(attention, "transformer_blocks", None) or []):
        for role in COMPONENTS:
            if isinstance(getattr(block, role, None), torch.nn.Module):
                out.append((f"{path}.transformer_blocks.{k}.{role}", role))
    return out


def _stage_layers(stage_name: str, stage: torch.nn.Module, mid: bool = False) -> list[tuple[str, str, int]]:
    """Layers of one stage in execution order as ``(path, role, index)``."""
    resnets = list(getattr(stage, "resnets", None) or [])
    attentions = list(getattr(stage, "attentions", None) or [])
    out: list[tuple[str, str, int]] = []
    if mid:
        # UNetMidBlock2DCrossAttn: resnets[0], then (attentions[i], resnets[i + 1]) pairs.
        out.append((f"{stage_name}.resnets.0", "resnet", 0))
        for i in range(len(attentions)):
            out.append((f"{stage_name}.attentions.{i}", "attention", i))
            if i + 1 < len(resnets):
                out.append((f"{stage_name}.resnets.{i + 1}", "resnet", i + 1))
        for i in range(len(attentions) + 1, len(resnets)):
            out.append((f"{stage_name}.resnets.{i}", "resnet", i))
        return out
    for j in range(len(resnets)):
        out.append((f"{stage_name}.resnets.{j}", "resnet", j))
        if j < len(attentions):
            out.append((f"{stage_name}.attentions.{j}", "attention", j))
    for j, _ in enumerate(getattr(stage, "downsamplers", None) or []):
        out.append((f"{stage_name}.downsamplers.{j}", "downsampler", j))
    for j, _ in enumerate(getattr(stage, "upsamplers", None) or []):
        out.append((f"{stage_name}.upsamplers.{j}", "upsampler", j))
    return out


def unet2d_layers(unet: torch.nn.Module) -> list[tuple[str, str | None, str, torch.nn.Module]]:
    """All cacheable blocks as ``(path, parent, role, module)``, stages before their layers."""
    out: list[tuple[str, str | None, str, torch.nn.Module]] = []
    stages: list[tuple[str, torch.nn.Module, bool]] = [
        (f"down_blocks.{i}", b, False) for i, b in enumerate(unet.down_blocks)
    ]
    if getattr(unet, "mid_block", None) is not None:
        stages.append(("mid_block", unet.mid_block, True))
    stages += [(f"up_blocks.{i}", b, False) for i, b in enumerate(unet.up_blocks)]
    for name, stage, mid in stages:
        out.append((name, None, "stage", stage))
        for path, role, _ in _stage_layers(name, stage, mid):
            module = unet.get_submodule(path)
            out.append((path, name, role, module))
            if role == "attention":
                out += [(c, path, r, unet.get_submodule(c)) for c, r in _components(path, module)]
    return out


def _residual_ok(role: str, module: torch.nn.Module) -> bool:
    if role in ("attention", "attn1", "attn2", "ff"):
        return True
    if role == "resnet":
        same = getattr(module, "in_channels", None) == getattr(module, "out_channels", None)
        return bool(same) and not getattr(module, "up", False) and not getattr(module, "down", False)
    return False


def _deepcache_branches(unet: torch.nn.Module) -> tuple[frozenset[str], ...]:
    """Layers that run on a cached step, per branch id, exactly as the official DeepCache helper decides.

    Official numbering: ``block = branch // L``, ``layer = branch % L`` with L = resnets per up block
    (3 in SD/SDXL, hard-coded there). Down layers of block i run if ``i < block`` or (``i == block`` and
    ``j < layer``); a downsampler runs if ``i < block``; the mid block never runs; an up layer of
    block_i = n-1-u and layer_i = L-1-j runs if ``block_i < block`` or (``block_i == block`` and
    ``layer_i <= layer``); an upsampler runs if ``block_i <= block``.
    """
    ups = list(unet.up_blocks)
    n = len(ups)
    widths = {len(getattr(u, "resnets", []) or []) for u in ups}
    if len(widths) != 1 or n != len(unet.down_blocks):
        return ()
    L = widths.pop()
    branches = []
    for b in range(n * L):
        block, layer = divmod(b, L)
        keep: set[str] = set()
        for i, down in enumerate(unet.down_blocks):
            for path, role, j in _stage_layers(f"down_blocks.{i}", down):
                if role == "downsampler":
                    if i < block:
                        keep.add(path)
                elif i < block or (i == block and j < layer):
                    keep.add(path)
        for u, up in enumerate(ups):
            block_i = n - 1 - u
            for path, role, j in _stage_layers(f"up_blocks.{u}", up):
                if role == "upsampler":
                    if block_i <= block:
                        keep.add(path)
                    continue
                layer_i = L - 1 - j
                if block_i < block or (block_i == block and layer_i <= layer):
                    keep.add(path)
        branches.append(frozenset(keep))
    return tuple(branches)


def unet2d_block_space(
    unet: torch.nn.Module, macs: Mapping[str, int] | None = None, other_macs: int | None = None
) -> BlockSpace:
    """Build the :class:`BlockSpace` of a UNet2DConditionModel-like denoiser.

    ``macs`` maps block paths to the MACs of one call (see :mod:`cachesearch.models._cost`).
    """
    if not all(hasattr(unet, a) for a in ("down_blocks", "up_blocks")):
        raise ScheduleError(f"{type(unet).__name__} is not a UNet2D denoiser (no down_blocks/up_blocks)")
    blocks = []
    for path, parent, role, module in unet2d_layers(unet):
        kind = BlockKind.STAGE if parent is None else (BlockKind.COMPONENT if role in COMPONENTS else BlockKind.LAYER)
        blocks.append(
            BlockInfo(
                name=path,
                kind=kind,
                parent=parent,
                macs=None if macs is None else macs.get(path),
                residual_ok=_residual_ok(role, module),
                role=role,
                attention=role in ("attn1", "attn2"),
            )
        )
    return BlockSpace(
        family=FAMILY, blocks=tuple(blocks), deepcache_branches=_deepcache_branches(unet), other_macs=other_macs
    )


def _config(unet: torch.nn.Module) -> Mapping[str, Any]:
    config = getattr(unet, "config", None)
    if config is None:
        raise TypeError(f"{type(unet).__name__} has no diffusers config; pass a UNet2DConditionModel")
    return config


def unet2d_example_inputs(
    unet: torch.nn.Module,
    *,
    height: int | None = None,
    width: int | None = None,
    batch_size: int = 1,
    text_len: int = 77,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> dict[str, Any]:
    """Keyword inputs for one call of a diffusers ``UNet2DConditionModel`` (values are zeros/ones).

    ``height``/``width`` are latent sizes (default ``config.sample_size``: 64 for SD 1.5 = 512 px, 128 for
    SDXL = 1024 px). SDXL-style ``addition_embed_type="text_time"`` UNets also get ``added_cond_kwargs``.
    """
    cfg = _config(unet)
    param = next(unet.parameters(), None)
    device = torch.device(device) if device is not None else (param.device if param is not None else None)
    dtype = dtype or (param.dtype if param is not None else torch.float32)
    sample = cfg["sample_size"]
    default_h, default_w = (sample, sample) if isinstance(sample, int) else sample
    h = default_h if height is None else height
    w = default_w if width is None else width
    if batch_size < 1 or text_len < 1 or h < 1 or w < 1:
        raise ValueError(f"sizes must be positive: batch={batch_size}, text_len={text_len}, latent={h}x{w}")
    ctx_dim = cfg.get("encoder_hid_dim") or cfg["cross_attention_dim"]
    if isinstance(ctx_dim, (list, tuple)):
        if len(set(ctx_dim)) != 1:
            raise ValueError(f"per-block cross_attention_dim {ctx_dim} is not supported")
        ctx_dim = ctx_dim[0]
    kw: dict[str, Any] = {"device": device, "dtype": dtype}
    inputs: dict[str, Any] = {
        "sample": torch.zeros(batch_size, cfg["in_channels"], h, w, **kw),
        "timestep": torch.full((batch_size,), 500.0, **kw),
        "encoder_hidden_states": torch.zeros(batch_size, text_len, ctx_dim, **kw),
    }
    if cfg.get("addition_embed_type") == "text_time":
        n_time = 6  # SDXL micro-conditioning: original size, crop top-left, target size
        text_dim = cfg["projection_class_embeddings_input_dim"] - n_time * cfg["addition_time_embed_dim"]
        inputs["added_cond_kwargs"] = {
            "text_embeds": torch.zeros(batch_size, text_dim, **kw),
            "time_ids": torch.ones(batch_size, n_time, **kw),
        }
    elif cfg.get("addition_embed_type") not in (None, "text"):  # "text" only reads encoder_hidden_states
        raise ValueError(f"addition_embed_type {cfg.get('addition_embed_type')!r} is not supported")
    if cfg.get("class_embed_type") is not None or cfg.get("num_class_embeds") is not None:
        raise ValueError("class-conditioned UNets are not supported")
    if cfg.get("time_cond_proj_dim") is not None:
        inputs["timestep_cond"] = torch.zeros(batch_size, cfg["time_cond_proj_dim"], **kw)
    return inputs


def _pixel_factor(pipe: Any) -> int:
    return int(getattr(pipe, "vae_scale_factor", 8) or 8)


class UNet2DAdapter(DenoiserAdapter):
    """``UNet2DConditionModel``-like denoisers: ``down_blocks`` / ``mid_block`` / ``up_blocks``."""

    family = FAMILY
    pipeline_attribute = "unet"
    description = "UNet2DConditionModel-like UNets (SD 1.x/2.x, SDXL, the embedded model)"

    def matches(self, denoiser: torch.nn.Module) -> bool:
        return hasattr(denoiser, "down_blocks") and hasattr(denoiser, "up_blocks")

    def block_space(
        self, denoiser: torch.nn.Module, *, macs: Mapping[str, int] | None = None, other_macs: int | None = None
    ) -> BlockSpace:
        return unet2d_block_space(denoiser, macs=macs, other_macs=other_macs)

    def example_inputs(
        self,
        denoiser: torch.nn.Module,
        *,
        batch_size: int = 1,
        height: int | None = None,
        width: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> dict[str, Any]:
        return unet2d_example_inputs(
            denoiser, height=height, width=width, batch_size=batch_size, device=device, dtype=dtype
        )

    def latent_shape(self, pipe: Any, height: int, width: int) -> tuple[int, ...]:
        factor = _pixel_factor(pipe)
        return int(pipe.unet.config.in_channels), height // factor, width // factor

    def default_size(self, pipe: Any) -> tuple[int, int]:
        factor = _pixel_factor(pipe)
        sample = getattr(pipe, "default_sample_size", None) or pipe.unet.config.sample_size
        h, w = (sample, sample) if isinstance(sample, int) else (int(sample[0]), int(sample[1]))
        return h * factor, w * factor

    def uses_cfg(self, pipe: Any, guidance_scale: float) -> bool:
        # Guidance-distilled UNets (LCM: time_cond_proj_dim) take the scale as an embedding, not a CFG batch.
        return guidance_scale > 1 and getattr(pipe.unet.config, "time_cond_proj_dim", None) is None


register_adapter(UNet2DAdapter())
