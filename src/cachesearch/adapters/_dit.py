"""What the transformer-denoiser (DiT) families share: block stacks with components, the block space, sizes.

A DiT family (:mod:`.flux`, :mod:`.sd3`, :mod:`.pixart`) is a :class:`DiTAdapter` that says which denoiser
classes it covers, which ``ModuleList`` attributes hold its blocks (:class:`Stack`) and which attributes of a
block are its components (:class:`Component`), plus its example inputs and latent shape. Blocks are
``<stack>.<i>`` (kind ``stage``: the granularity DeepCache calls a stage, here one transformer block) and
components ``<stack>.<i>.<attribute>`` (kind ``component``), in execution order, each with its MACs when
costed (a block's MACs include its components').
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..schedule import BlockInfo, BlockKind, BlockSpace, ScheduleError
from . import _blocks  # noqa: F401  (registers the Attention / FeedForward / Linear contracts)
from .base import DenoiserAdapter

__all__ = ["Component", "DiTAdapter", "Stack", "check_sizes", "dit_block_space", "dit_layers", "place", "vae_factor"]


@dataclass(frozen=True)
class Component:
    """One cacheable submodule of a transformer block.

    Attributes:
        attribute: its attribute name in the block (``"attn"``, ``"ff_context"``, ``"proj_mlp"``); blocks whose
            attribute is missing or ``None`` (SD3's ``attn2`` outside the dual-attention layers) skip it.
        attention: whether it is an attention module (TaylorSeer's and PAB's default targets).
        residual_ok: whether its output has its input's shape (``reuse: residual`` is meaningful).
    """

    attribute: str
    attention: bool = False
    residual_ok: bool = True


@dataclass(frozen=True)
class Stack:
    """A ``ModuleList`` of transformer blocks and their components, in execution order."""

    attribute: str
    components: tuple[Component, ...]


def dit_layers(denoiser: torch.nn.Module, stacks: tuple[Stack, ...]) -> list[tuple[str, str | None, Component | None]]:
    """``(path, parent, component)`` of every block (``component`` ``None``) and component, in execution order."""
    out: list[tuple[str, str | None, Component | None]] = []
    for stack in stacks:
        blocks = getattr(denoiser, stack.attribute, None)
        if not isinstance(blocks, torch.nn.ModuleList):
            raise ScheduleError(f"{type(denoiser).__name__} has no block list {stack.attribute!r}")
        for i, block in enumerate(blocks):
            path = f"{stack.attribute}.{i}"
            out.append((path, None, None))
            for comp in stack.components:
                if isinstance(getattr(block, comp.attribute, None), torch.nn.Module):
                    out.append((f"{path}.{comp.attribute}", path, comp))
    return out


def dit_block_space(
    denoiser: torch.nn.Module,
    family: str,
    stacks: tuple[Stack, ...],
    macs: Mapping[str, int] | None = None,
    other_macs: int | None = None,
) -> BlockSpace:
    """The :class:`BlockSpace` of a DiT: its blocks (kind stage) and their components (kind component)."""
    blocks = []
    for path, parent, comp in dit_layers(denoiser, stacks):
        blocks.append(
            BlockInfo(
                name=path,
                kind=BlockKind.STAGE if comp is None else BlockKind.COMPONENT,
                parent=parent,
                macs=None if macs is None else macs.get(path),
                residual_ok=True if comp is None else comp.residual_ok,
                role="block" if comp is None else comp.attribute,
                attention=comp is not None and comp.attention,
            )
        )
    return BlockSpace(family=family, blocks=tuple(blocks), other_macs=other_macs)


def place(denoiser: torch.nn.Module, device: torch.device | str | None, dtype: torch.dtype | None) -> dict[str, Any]:
    """``{"device": ..., "dtype": ...}`` for example inputs: the given ones, else the denoiser's."""
    param = next(denoiser.parameters(), None)
    dev = torch.device(device) if device is not None else (param.device if param is not None else None)
    return {"device": dev, "dtype": dtype or (param.dtype if param is not None else torch.float32)}


def vae_factor(pipe: Any) -> int:
    """Pixels per latent pixel of a pipeline (its ``vae_scale_factor``; 8 for every VAE of these families)."""
    return int(getattr(pipe, "vae_scale_factor", 8) or 8)


def check_sizes(**sizes: int) -> None:
    """Refuse non-positive example-input sizes, naming them."""
    if any(v < 1 for v in sizes.values()):
        raise ValueError("sizes must be positive: " + ", ".join(f"{k}={v}" for k, v in sizes.items()))


TEXT_TOKENS_ATTR = "cachesearch_text_tokens"
"""Attribute of a transformer that overrides its family's text length in MAC counts (copied to meta replicas)."""


class DiTAdapter(DenoiserAdapter):
    """Base of the transformer-denoiser adapters: a subclass sets ``family``, ``description``,
    ``class_names``, ``stacks`` and ``text_len`` and implements the example inputs and latent shape."""

    pipeline_attribute = "transformer"
    class_names: tuple[str, ...] = ()
    """Denoiser classes covered (matched by name along the MRO, so subclasses are covered too)."""
    stacks: tuple[Stack, ...] = ()
    text_len: int = 77
    """Text tokens of one call in the family's pipeline (for example inputs: MACs scale with it)."""

    def text_tokens(self, denoiser: torch.nn.Module) -> int:
        """Text tokens of one call of ``denoiser``: its :data:`TEXT_TOKENS_ATTR` attribute where the pipeline
        that owns it runs shorter prompts (the embedded FLUX model: 16), else the family's :attr:`text_len`."""
        return int(getattr(denoiser, TEXT_TOKENS_ATTR, None) or self.text_len)

    def matches(self, denoiser: torch.nn.Module) -> bool:
        return any(cls.__name__ in self.class_names for cls in type(denoiser).__mro__)

    def block_space(
        self, denoiser: torch.nn.Module, *, macs: Mapping[str, int] | None = None, other_macs: int | None = None
    ) -> BlockSpace:
        return dit_block_space(denoiser, self.family, self.stacks, macs=macs, other_macs=other_macs)

    def default_size(self, pipe: Any) -> tuple[int, int]:
        sample = getattr(pipe, "default_sample_size", None) or pipe.transformer.config.sample_size
        h, w = (sample, sample) if isinstance(sample, int) else (int(sample[0]), int(sample[1]))
        return h * vae_factor(pipe), w * vae_factor(pipe)

    def latent_shape(self, pipe: Any, height: int, width: int) -> tuple[int, ...]:
        factor = vae_factor(pipe)
        return int(pipe.transformer.config.in_channels), height // factor, width // factor

    def uses_cfg(self, pipe: Any, guidance_scale: float) -> bool:
        return guidance_scale > 1
