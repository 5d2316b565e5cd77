"""Structure-preserving maps over the nested outputs of diffusers blocks (tensors, tuples, BaseOutput).

Which element is the hidden state is not guessed here: the adapter's :class:`~cachesearch.models.BlockIO` says.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

__all__ = ["tree_cat", "tree_map", "tree_slice"]


def tree_map(fn: Callable[[torch.Tensor], Any], obj: Any) -> Any:
    """Apply ``fn`` to every tensor inside tuples, lists, dicts and diffusers ``BaseOutput`` objects."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(tree_map(fn, o) for o in obj)
    if isinstance(obj, list):
        return [tree_map(fn, o) for o in obj]
    if isinstance(obj, Mapping):
        # BaseOutput is an OrderedDict subclass that must be rebuilt with keyword arguments.
        return type(obj)(**{k: tree_map(fn, v) for k, v in obj.items()})
    return obj


def tree_slice(obj: Any, start: int, stop: int, batch: int) -> Any:
    """Rows ``start:stop`` of every tensor whose leading dimension is the full batch ``batch``."""
    return tree_map(lambda t: t[start:stop] if t.dim() > 0 and t.shape[0] == batch else t, obj)


def tree_cat(a: Any, b: Any) -> Any:
    """Concatenate two structurally identical trees along dim 0."""
    if isinstance(a, torch.Tensor):
        return torch.cat([a, b], dim=0)
    if isinstance(a, tuple) and not hasattr(a, "_fields"):
        return tuple(tree_cat(x, y) for x, y in zip(a, b))
    if isinstance(a, list):
        return [tree_cat(x, y) for x, y in zip(a, b)]
    if isinstance(a, Mapping):
        return type(a)(**{k: tree_cat(a[k], b[k]) for k in a})
    return a
