"""What the transformer-denoiser families (``taylorseer``, ``middle``, ``components``) share: the refusal of other
denoisers, component kinds, and the selection of components a space file names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..context import TRANSFORMER_FAMILIES, SpaceContext
from ..params import Fields

__all__ = [
    "COMPONENT_SETS",
    "check_component_spec",
    "kind_of",
    "kinds",
    "nonempty",
    "require_transformer",
    "select_components",
]

COMPONENT_SETS = ("all", "attention")
"""The named component selections: every component of every block, or only the attention modules."""


def require_transformer(name: str, ctx: SpaceContext, fields: Fields) -> None:
    """Refuse a denoiser that is not a stack of transformer blocks, naming the field that lists the family."""
    if not ctx.transformer:
        raise fields.error(
            "mask.families",
            f"family {name!r} caches the blocks or components of a transformer denoiser "
            f"({', '.join(TRANSFORMER_FAMILIES)}); {ctx.denoiser()} is not one: remove {name!r} (its UNet families "
            f"are deepcache, periodic and blockcaching: --space joint)",
        )


def kind_of(component: str) -> str:
    """A component's kind: its path without block indices (``single_transformer_blocks.3.attn`` →
    ``single_transformer_blocks.attn``), shared by the same component of every block of a stack."""
    return ".".join(p for p in component.split(".") if not p.isdigit())


def kinds(components: Sequence[str]) -> tuple[str, ...]:
    """The kinds of ``components``, in order of first appearance."""
    return tuple(dict.fromkeys(kind_of(c) for c in components))


def check_component_spec(fields: Fields, path: str, value: Any) -> str | tuple[str, ...]:
    """A space file's component selection: ``all``, ``attention`` or a non-empty list of kinds or names."""
    if isinstance(value, str):
        if value not in COMPONENT_SETS:
            raise fields.error(path, f"expected one of {list(COMPONENT_SETS)} or a list of component kinds or "
                                     f"names, got {value!r}")
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        if len(set(value)) != len(value):
            raise fields.error(path, f"lists a component twice: {value}")
        return tuple(value)
    raise fields.error(path, f"expected one of {list(COMPONENT_SETS)} or a non-empty list of component kinds or "
                             f"names like ['transformer_blocks.attn', 'single_transformer_blocks.3.proj_out'], "
                             f"got {value!r}")


def select_components(spec: str | tuple[str, ...], ctx: SpaceContext, fields: Fields | None = None,
                      path: str = "") -> tuple[str, ...]:
    """The components ``spec`` selects, in execution order. A list item is a kind (every block's component of
    that kind) or one component's name; an unknown item is refused naming ``path[i]`` (``fields`` given),
    else skipped."""
    if spec == "all":
        return ctx.components
    if spec == "attention":
        return ctx.attention
    chosen: set[str] = set()
    known = kinds(ctx.components)
    for i, item in enumerate(spec):
        of_kind = [c for c in ctx.components if kind_of(c) == item]
        if of_kind:
            chosen.update(of_kind)
        elif item in ctx.components:
            chosen.add(item)
        elif fields is not None:
            raise fields.error(f"{path}[{i}]", f"unknown component {item!r}; {ctx.denoiser()}'s component kinds "
                                               f"are {list(known)} (or name one, e.g. {ctx.components[:1]})")
    return tuple(c for c in ctx.components if c in chosen)


def nonempty(selected: tuple[str, ...], ctx: SpaceContext, fields: Fields, path: str) -> tuple[str, ...]:
    """``selected``, refused when it is empty (``attention`` on a denoiser whose adapter marks none)."""
    if not selected:
        raise fields.error(path, f"selects no component of {ctx.denoiser()}")
    return selected
