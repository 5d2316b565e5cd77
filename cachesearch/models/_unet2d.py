"""Adapter for ``UNet2DConditionModel`` denoisers (SD 1.x/2.x, SDXL, the embedded model).

It lists the cacheable blocks at stage and layer granularity in execution order and maps DeepCache
branch ids to the layers that still run on a cached step.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..schedule import BlockInfo, BlockKind, BlockSpace, ScheduleError

__all__ = ["FAMILY", "unet2d_block_space", "unet2d_layers"]

FAMILY = "unet2d"


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
            out.append((path, name, role, unet.get_submodule(path)))
    return out


def _residual_ok(role: str, module: torch.nn.Module) -> bool:
    if role == "attention":
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
        blocks.append(
            BlockInfo(
                name=path,
                kind=BlockKind.STAGE if parent is None else BlockKind.LAYER,
                parent=parent,
                macs=None if macs is None else macs.get(path),
                residual_ok=_residual_ok(role, module),
            )
        )
    return BlockSpace(
        family=FAMILY, blocks=tuple(blocks), deepcache_branches=_deepcache_branches(unet), other_macs=other_macs
    )
