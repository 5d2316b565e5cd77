"""Small helpers over the nested outputs of diffusers blocks (tensors, tuples, BaseOutput dataclasses)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

__all__ = ["first_tensor", "replace_first", "tree_cat", "tree_map", "tree_slice"]


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


def first_tensor(obj: Any) -> torch.Tensor | None:
    """The first tensor of an output: the tensor itself, ``out[0]`` or ``out.sample``."""
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, Mapping):
        obj = tuple(obj.values())
    if isinstance(obj, (tuple, list)) and obj and isinstance(obj[0], torch.Tensor):
        return obj[0]
    return None


def replace_first(obj: Any, new: torch.Tensor) -> Any:
    """``obj`` with its first tensor replaced by ``new`` (structure kept)."""
    if isinstance(obj, torch.Tensor):
        return new
    if isinstance(obj, Mapping):
        keys = list(obj)
        return type(obj)(**{k: (new if i == 0 else obj[k]) for i, k in enumerate(keys)})
    if isinstance(obj, tuple):
        return (new, *obj[1:])
    if isinstance(obj, list):
        return [new, *obj[1:]]
    raise TypeError(f"cannot replace the first tensor of a {type(obj).__name__}")
