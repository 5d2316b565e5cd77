"""The generic transformer adapter: any denoiser with a block list diffusers names, driven by diffusers' metadata.

Blocks are the elements of the denoiser's block lists (``<list>.<i>``, kind ``stage``: the granularity DeepCache
calls a stage, here one transformer block), the lists found by name (:func:`._diffusers.block_list_names`:
``blocks``, ``transformer_blocks``, ``single_transformer_blocks``, ``layers``, ...) in the denoiser's attribute
order, or as registered for its class (:func:`register_block_lists`). Components are a block's outermost
submodules that are diffusers attention or feed-forward modules, whatever their attribute names (Wan's
``attn1``/``attn2``/``ffn``, Qwen-Image's ``attn``/``img_mlp``/``txt_mlp``), kind ``component``, in attribute
order (which is the order they run in: the coverage tests check it on every class). A block's output layout comes
from diffusers' ``TransformerBlockRegistry`` or our own registry (:func:`~.base.block_io_of`).

Block classes whose components are not (only) those modules register them (:func:`register_components`: FLUX's
single-block ``proj_mlp``/``attn``/``proj_out``). A family module subclasses :class:`TransformerAdapter` for what
is special: ``class_names``, its presets, the CFG convention (``cfg``), latent shape and frames. Without one, a
transformer works at block and component granularity under family ``"transformer"``, its example inputs taken
from :mod:`._examples`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..schedule import BlockInfo, BlockKind, BlockSpace, ScheduleError
from . import _blocks  # noqa: F401  (registers the Attention / FeedForward / Linear contracts)
from ._diffusers import (
    attention_classes,
    block_list_names,
    component_classes,
    is_diffusers_module,
    registered_in_diffusers,
)
from ._examples import Sizes, example_for
from .base import DenoiserAdapter, register_adapter

__all__ = [
    "TEXT_TOKENS_ATTR",
    "Component",
    "TransformerAdapter",
    "block_lists_of",
    "check_sizes",
    "diffusers_hook_problem",
    "place",
    "register_block_lists",
    "register_components",
    "transformer_layers",
    "vae_factor",
]

TEXT_TOKENS_ATTR = "cachesearch_text_tokens"
"""Attribute of a transformer that overrides its family's text length in MAC counts (copied to meta replicas)."""


@dataclass(frozen=True)
class Component:
    """One cacheable submodule of a transformer block.

    Attributes:
        attribute: its path in the block (``"attn"``, ``"ff_context"``, ``"proj_mlp"``; ``"block.attn1"`` in a
            block that wraps another); blocks where it is missing or ``None`` (SD3's ``attn2`` outside the
            dual-attention layers) skip it.
        attention: whether it is an attention module (TaylorSeer's and PAB's default targets).
        residual_ok: whether its output has its input's shape (``reuse: residual`` is meaningful).
    """

    attribute: str
    attention: bool = False
    residual_ok: bool = True


_BLOCK_LISTS: dict[str, tuple[str, ...]] = {}
_COMPONENTS: dict[str, tuple[Component, ...]] = {}


def register_components(block_class: str, components: tuple[Component, ...]) -> None:
    """Register the components of the block class called ``block_class`` (subclasses inherit them), in the
    order they run, where they are not just its diffusers attention and feed-forward modules (FLUX's single-stream
    ``proj_mlp``/``attn``/``proj_out``) or where one's output does not have its input's shape (``residual_ok``)."""
    _COMPONENTS[block_class] = tuple(components)


def register_block_lists(class_name: str, lists: tuple[str, ...]) -> None:
    """Register the block lists (``ModuleList`` attributes or module paths such as ``mode_blocks.image``, in
    execution order) of the denoiser class called ``class_name`` (subclasses inherit them): for a transformer whose
    lists diffusers does not name."""
    if not lists or not all(isinstance(a, str) and a for a in lists):
        raise ValueError(f"register_block_lists({class_name!r}, ...): expected a tuple of attribute names")
    _BLOCK_LISTS[class_name] = tuple(lists)


def _is_block_list(module: Any) -> bool:
    return isinstance(module, torch.nn.ModuleList) and len(module) > 0


def block_lists_of(denoiser: torch.nn.Module) -> tuple[str, ...]:
    """The block lists of ``denoiser``: registered for its class, else its children that are non-empty
    ``ModuleList`` s with a name diffusers (or cache-dit) gives block lists, in attribute order."""
    for cls in type(denoiser).__mro__:
        lists = _BLOCK_LISTS.get(cls.__name__)
        if lists is not None:
            return lists
    names = block_list_names(denoiser)
    return tuple(name for name, child in denoiser.named_children() if name in names and _is_block_list(child))


def _components(block: torch.nn.Module) -> tuple[Component, ...]:
    """A block's components: registered for its class, else its outermost submodules that are diffusers attention
    or feed-forward modules (children in most blocks; ``block.attn1`` where a block wraps another, as HiDream's)."""
    for cls in type(block).__mro__:
        given = _COMPONENTS.get(cls.__name__)
        if given is not None:
            return given
    if not is_diffusers_module(block):
        return ()
    kinds = component_classes()
    attention = attention_classes()
    found: list[Component] = []
    for name, module in block.named_modules():
        if name and isinstance(module, kinds) and not any(name.startswith(c.attribute + ".") for c in found):
            found.append(Component(name, attention=isinstance(module, attention)))
    return tuple(found)


def _submodule(block: torch.nn.Module, path: str) -> torch.nn.Module | None:
    try:
        module = block.get_submodule(path)
    except AttributeError:
        return None
    return module if isinstance(module, torch.nn.Module) else None


def transformer_layers(
    denoiser: torch.nn.Module, lists: tuple[str, ...]
) -> list[tuple[str, str | None, Component | None]]:
    """``(path, parent, component)`` of every block (``component`` ``None``) and component, in execution order."""
    out: list[tuple[str, str | None, Component | None]] = []
    for attribute in lists:
        blocks = _submodule(denoiser, attribute)
        if not isinstance(blocks, torch.nn.ModuleList):
            raise ScheduleError(f"{type(denoiser).__name__} has no block list {attribute!r}")
        for i, block in enumerate(blocks):
            path = f"{attribute}.{i}"
            out.append((path, None, None))
            for comp in _components(block):
                if _submodule(block, comp.attribute) is not None:
                    out.append((f"{path}.{comp.attribute}", path, comp))
    return out


def diffusers_hook_problem(denoiser: torch.nn.Module, lists: tuple[str, ...] | None = None) -> str | None:
    """Why diffusers' block-level cache hooks (FirstBlockCache, MagCache, SeaCache: they look each block class up
    in its ``TransformerBlockRegistry``) cannot run on ``denoiser``'s blocks, or ``None`` when they can."""
    lists = block_lists_of(denoiser) if lists is None else lists
    classes = {type(block) for name in lists for block in (_submodule(denoiser, name) or ())}
    missing = sorted(cls.__name__ for cls in classes if not registered_in_diffusers(cls))
    if not missing:
        return None
    return (f"diffusers' TransformerBlockRegistry has no output layout for {', '.join(missing)}, which its "
            f"block-level cache hooks need")


def place(denoiser: torch.nn.Module, device: torch.device | str | None, dtype: torch.dtype | None) -> dict[str, Any]:
    """``{"device": ..., "dtype": ...}`` for example inputs: the given ones, else the denoiser's."""
    param = next(denoiser.parameters(), None)
    dev = torch.device(device) if device is not None else (param.device if param is not None else None)
    return {"device": dev, "dtype": dtype or (param.dtype if param is not None else torch.float32)}


def vae_factor(pipe: Any) -> int:
    """Pixels per latent pixel of a pipeline (its ``vae_scale_factor``; 8 for most image VAEs)."""
    return int(getattr(pipe, "vae_scale_factor", 8) or 8)


def check_sizes(**sizes: int) -> None:
    """Refuse non-positive example-input sizes, naming them."""
    if any(v < 1 for v in sizes.values()):
        raise ValueError("sizes must be positive: " + ", ".join(f"{k}={v}" for k, v in sizes.items()))


class TransformerAdapter(DenoiserAdapter):
    """Transformer denoisers, from diffusers' metadata. The registered instance (family ``"transformer"``) is
    the fallback for every denoiser with a block list; a family subclass sets ``family``, ``description`` and
    ``class_names`` and overrides only what is special.

    Attributes:
        class_names: denoiser classes a family covers (matched by name along the MRO); empty for the fallback,
            which covers every denoiser with a block list (:func:`block_lists_of`).
        block_lists: the family's block lists, when they are not the ones found by name.
        text_len: text tokens of one call in the family's pipeline (example inputs; MACs scale with it), or
            ``None`` for the example-input table's.
    """

    family = "transformer"
    pipeline_attribute = "transformer"
    description = "any transformer with a block list diffusers names (blocks, transformer_blocks, layers, ...)"
    fallback = True
    class_names: tuple[str, ...] = ()
    block_lists: tuple[str, ...] | None = None
    text_len: int | None = None

    def matches(self, denoiser: torch.nn.Module) -> bool:
        if self.class_names:
            return any(cls.__name__ in self.class_names for cls in type(denoiser).__mro__)
        return bool(block_lists_of(denoiser))

    def refusal(self, denoiser: torch.nn.Module) -> str | None:
        if self.class_names:
            return None
        lists = ", ".join(sorted(block_list_names(denoiser)))
        name = type(denoiser).__name__
        return (f"it has no block list named as diffusers names them ({lists}); register its block lists with "
                f"cachesearch.adapters.register_block_lists({name!r}, ('<ModuleList attribute>', ...))")

    def lists(self, denoiser: torch.nn.Module) -> tuple[str, ...]:
        """The block lists of ``denoiser`` in execution order."""
        return self.block_lists if self.block_lists is not None else block_lists_of(denoiser)

    def layers(self, denoiser: torch.nn.Module) -> list[tuple[str, str | None, Component | None]]:
        """``(path, parent, component)`` of every block and component of ``denoiser``, in execution order."""
        return transformer_layers(denoiser, self.lists(denoiser))

    def block_space(
        self, denoiser: torch.nn.Module, *, macs: Mapping[str, int] | None = None, other_macs: int | None = None
    ) -> BlockSpace:
        blocks = []
        for path, parent, comp in self.layers(denoiser):
            blocks.append(BlockInfo(
                name=path,
                kind=BlockKind.STAGE if comp is None else BlockKind.COMPONENT,
                parent=parent,
                macs=None if macs is None else macs.get(path),
                residual_ok=True if comp is None else comp.residual_ok,
                role="block" if comp is None else comp.attribute,
                attention=comp is not None and comp.attention,
            ))
        if not blocks:
            raise ScheduleError(f"{type(denoiser).__name__}: {self.refusal(denoiser) or 'no blocks'}")
        return BlockSpace(family=self.family, blocks=tuple(blocks), other_macs=other_macs)

    def text_tokens(self, denoiser: torch.nn.Module) -> int:
        """Text tokens of one call of ``denoiser``: its :data:`TEXT_TOKENS_ATTR` attribute where the pipeline
        that owns it runs shorter prompts (the embedded FLUX model: 16), else the family's :attr:`text_len`, else
        the example-input table's."""
        given = getattr(denoiser, TEXT_TOKENS_ATTR, None) or self.text_len
        return int(given) if given else example_for(denoiser).text

    def example_inputs(
        self,
        denoiser: torch.nn.Module,
        *,
        batch_size: int = 1,
        height: int | None = None,
        width: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        frames: int | None = None,
        text: int | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Any]:
        """Inputs of one call for ``height × width`` (× ``frames`` for video) VAE latents and ``text`` tokens, from
        the example-input table (:mod:`._examples`; default sizes there). Zeros, or standard normal data where a
        ``generator`` is given (for tests)."""
        example = example_for(denoiser)
        default_h, default_w = example.size(getattr(denoiser, "config", {}))
        h = default_h if height is None else height
        w = default_w if width is None else width
        f = example.default_frames(getattr(denoiser, "config", {})) if frames is None else frames
        check_sizes(batch=batch_size, latent_height=h, latent_width=w, frames=f, text=text or 1)
        sizes = Sizes(batch=batch_size, frames=f, height=h, width=w, text=text or self.text_tokens(denoiser))
        return example.inputs(denoiser, sizes, generator=generator, **place(denoiser, device, dtype))

    def default_size(self, pipe: Any) -> tuple[int, int]:
        sample = getattr(pipe, "default_sample_size", None) or getattr(pipe.transformer.config, "sample_size", None)
        if sample is None:
            sample = example_for(pipe.transformer).size(pipe.transformer.config)
        h, w = (sample, sample) if isinstance(sample, int) else (int(sample[0]), int(sample[1]))
        return h * vae_factor(pipe), w * vae_factor(pipe)

    def latent_shape(self, pipe: Any, height: int, width: int) -> tuple[int, ...]:
        """One sample's latents as the denoiser takes them: the example inputs' latent at ``height × width``
        pixels (on the meta device: shapes only), without its batch dimension (a per-sample list's first
        element). Video families override it with the pipeline's frames."""
        factor = vae_factor(pipe)
        denoiser = pipe.transformer
        latent = self.example_inputs(denoiser, height=height // factor, width=width // factor,
                                     device="meta")[example_for(denoiser).latent]
        return tuple(latent[0].shape) if isinstance(latent, list) else tuple(latent.shape[1:])


register_adapter(TransformerAdapter())
