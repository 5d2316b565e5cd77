"""What diffusers itself knows about its transformer blocks, read lazily (diffusers is imported only here, inside
functions, and only for modules whose class comes from diffusers).

* the names of block lists (``diffusers.hooks._common._ALL_TRANSFORMER_BLOCK_IDENTIFIERS``: ``blocks``,
  ``transformer_blocks``, ``single_transformer_blocks``, ``layers``, ...), plus the lists of the odd families that
  cache-dit's adapters name and diffusers' hooks do not (:data:`EXTRA_BLOCK_LISTS`);
* the attention and feed-forward classes (``_ATTENTION_CLASSES``, ``_FEEDFORWARD_CLASSES``): the components of a
  block, whatever their attribute names;
* the output layout of a block class (``diffusers.hooks._helpers.TransformerBlockRegistry``:
  ``return_hidden_states_index``, ``return_encoder_hidden_states_index`` and the argument names).

Why lazily: :mod:`cachesearch.adapters` is imported by ``import cachesearch`` (the production path, torch only);
a denoiser that is not a diffusers module never makes it import diffusers.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch

__all__ = [
    "EXTRA_BLOCK_LISTS",
    "attention_classes",
    "block_list_names",
    "component_classes",
    "diffusers_block_io",
    "is_diffusers_module",
    "registered_in_diffusers",
]

EXTRA_BLOCK_LISTS = (
    "joint_transformer_blocks",  # AuraFlow's double-stream blocks (before its single_transformer_blocks)
    "double_stream_blocks",  # HiDream-I1
    "single_stream_blocks",  # HiDream-I1
    "double_blocks",  # JoyImage
)
"""Block lists that cache-dit's ``caching/block_adapters`` name and diffusers' hook identifiers do not."""

# diffusers 0.42's identifiers, for denoisers of other libraries when diffusers is not installed
_FALLBACK_BLOCK_LISTS = ("blocks", "transformer_blocks", "single_transformer_blocks", "layers",
                         "visual_transformer_blocks", "temporal_transformer_blocks")


def is_diffusers_module(module: torch.nn.Module) -> bool:
    """Whether ``module``'s class (or a base class) is defined in diffusers."""
    return any(cls.__module__.split(".")[0] == "diffusers" for cls in type(module).__mro__)


@functools.cache
def _diffusers_block_lists() -> frozenset[str]:
    try:
        from diffusers.hooks._common import _ALL_TRANSFORMER_BLOCK_IDENTIFIERS as names
    except ImportError:  # pragma: no cover - diffusers is a dependency of every pipeline cachesearch adapts
        names = _FALLBACK_BLOCK_LISTS
    return frozenset(names) | frozenset(EXTRA_BLOCK_LISTS)


def block_list_names(module: torch.nn.Module | None = None) -> frozenset[str]:
    """Attribute names of the block lists of a transformer denoiser: diffusers' identifiers and
    :data:`EXTRA_BLOCK_LISTS` (for a ``module`` that is not a diffusers module, without importing diffusers:
    its 0.42 identifiers)."""
    if module is not None and not is_diffusers_module(module):
        return frozenset(_FALLBACK_BLOCK_LISTS) | frozenset(EXTRA_BLOCK_LISTS)
    return _diffusers_block_lists()


@functools.cache
def _classes() -> tuple[tuple[type, ...], tuple[type, ...]]:
    try:
        from diffusers.hooks._common import _ATTENTION_CLASSES, _FEEDFORWARD_CLASSES
    except ImportError:  # pragma: no cover
        return (), ()
    return tuple(_ATTENTION_CLASSES), tuple(_FEEDFORWARD_CLASSES)


def attention_classes() -> tuple[type, ...]:
    """diffusers' attention classes (``Attention``, ``MochiAttention``, ``AttentionModuleMixin``)."""
    return _classes()[0]


def component_classes() -> tuple[type, ...]:
    """diffusers' attention and feed-forward classes: what a block's components are."""
    attention, feedforward = _classes()
    return attention + feedforward


def _position(cls: type, name: str | None) -> int | None:
    """Position of argument ``name`` in ``cls.forward`` (``self`` excluded), as diffusers' metadata finds it."""
    if name is None:
        return None
    params = list(inspect.signature(cls.forward).parameters)[1:]
    return params.index(name) if name in params else None


@functools.cache
def _registered(cls: type) -> dict[str, Any] | None:
    from diffusers.hooks._helpers import TransformerBlockRegistry

    TransformerBlockRegistry._register()
    meta = TransformerBlockRegistry._registry.get(cls)
    if meta is None:  # diffusers' "Copied from" classes (ChronoEdit's, Wan-Animate's WanTransformerBlock) share a name
        meta = next((v for k, v in TransformerBlockRegistry._registry.items() if k.__name__ == cls.__name__), None)
    if meta is None:
        return None
    params = list(inspect.signature(cls.forward).parameters)[1:]
    hidden = meta.hidden_states_argument_name
    if hidden not in params and params:  # ZImageTransformerBlock takes `x` (the metadata keeps the default name)
        hidden = params[0]
    encoder = meta.encoder_hidden_states_argument_name
    return {
        "hidden_states_argument": hidden,
        "hidden_states_position": _position(cls, hidden) or 0,
        "return_hidden_states_index": meta.return_hidden_states_index,
        "return_encoder_hidden_states_index": meta.return_encoder_hidden_states_index,
        "encoder_hidden_states_argument": encoder,
        "encoder_hidden_states_position": _position(cls, encoder),
        "channel_dim": -1,  # transformer blocks take and return [B, L, C] token sequences
    }


def registered_in_diffusers(cls: type) -> bool:
    """Whether diffusers' ``TransformerBlockRegistry`` registers exactly ``cls`` (what its block-level cache hooks,
    FirstBlockCache, MagCache and SeaCache, look up: a copied class of the same name does not do)."""
    if cls.__module__.split(".")[0] != "diffusers":
        return False
    from diffusers.hooks._helpers import TransformerBlockRegistry

    TransformerBlockRegistry._register()
    return cls in TransformerBlockRegistry._registry


def diffusers_block_io(cls: type) -> dict[str, Any] | None:
    """The fields of a :class:`~.base.BlockIO` from what diffusers' ``TransformerBlockRegistry`` holds for ``cls``
    (or for a class of the same name: diffusers copies block classes between models) with argument positions from
    its ``forward`` signature, as diffusers finds them; ``None`` where it holds nothing."""
    if cls.__module__.split(".")[0] != "diffusers":
        return None
    return _registered(cls)
