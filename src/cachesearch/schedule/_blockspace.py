"""What a policy needs to know about a denoiser: its cacheable blocks, their nesting and costs.

Model adapters (``cachesearch.models``) build a :class:`BlockSpace`; policies compile against it and never
name a model class.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ._errors import ScheduleError

__all__ = ["BlockInfo", "BlockKind", "BlockSpace"]


class BlockKind(str, enum.Enum):
    """Granularity of a cacheable block."""

    STAGE = "stage"  # down_blocks.i, mid_block, up_blocks.i; a DiT's blocks (transformer_blocks.i, ...)
    LAYER = "layer"  # a resnet / attention / sampler inside a stage
    COMPONENT = "component"  # attn1 / attn2 / ff inside a transformer block (a DiT block's attn, ff, ...)


@dataclass(frozen=True, kw_only=True)
class BlockInfo:
    """One cacheable block of a denoiser.

    Attributes:
        name: module path inside the denoiser (``"up_blocks.1.attentions.0"``).
        kind: stage or layer granularity.
        parent: name of the enclosing stage for layers, ``None`` for stages.
        macs: multiply-accumulates of one call of this block (batch 1, the adapter's reference resolution),
            or ``None`` when unknown.
        residual_ok: whether ``reuse: residual`` is meaningful (output has the input's shape).
        role: what the block is, for policies that select by role (``"resnet"``, ``"attention"``,
            ``"attn1"``, ``"attn2"``, ``"ff"``, ``"stage"``...), or ``None``.
        attention: whether the block is an attention module (a component such as ``attn1``, ``attn2`` or a
            DiT block's ``attn``): what TaylorSeer and Pyramid Attention Broadcast cache by default.
    """

    name: str
    kind: BlockKind
    parent: str | None = None
    macs: int | None = None
    residual_ok: bool = False
    role: str | None = None
    attention: bool = False


@dataclass(frozen=True, kw_only=True)
class BlockSpace:
    """The cacheable blocks of one denoiser architecture, in execution order.

    Attributes:
        family: adapter family (``"unet2d"``).
        blocks: every cacheable block, stages and layers, in execution order (a stage precedes its layers).
        deepcache_branches: for each DeepCache branch id (numbered like the official package's
            ``cache_branch_id``), the layer-level blocks that still run on a cached step. Empty when the
            architecture has no skip branches.
        other_macs: MACs of one denoiser call outside every stage (embeddings, conv_in/out), if known.
    """

    family: str
    blocks: tuple[BlockInfo, ...]
    deepcache_branches: tuple[frozenset[str], ...] = ()
    other_macs: int | None = None
    _index: Mapping[str, BlockInfo] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {b.name: b for b in self.blocks}
        if len(index) != len(self.blocks):
            raise ScheduleError(f"{self.family} block space lists a block twice")
        for b in self.blocks:
            if b.parent is not None and b.parent not in index:
                raise ScheduleError(f"block {b.name!r} names unknown parent {b.parent!r}")
        object.__setattr__(self, "_index", index)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def get(self, name: str) -> BlockInfo:
        """Return the block called ``name`` or raise a :class:`ScheduleError` listing valid names."""
        try:
            return self._index[name]
        except KeyError:
            stages = self.names(BlockKind.STAGE)
            shown = ", ".join(stages[:12]) + (f", … ({len(stages)} in all)" if len(stages) > 12 else "")
            finer = self.names(BlockKind.LAYER)[:3] or self.names(BlockKind.COMPONENT)[:3]
            inside = "layers" if self.names(BlockKind.LAYER) else "components"
            raise ScheduleError(
                f"unknown block {name!r}: not a cacheable block of this {self.family} denoiser; valid blocks: "
                f"{shown} (stages) or their {inside}, e.g. {', '.join(finer)}"
            ) from None

    def check_names(self, names: Sequence[str], path: str = "blocks") -> None:
        """Refuse names that are not blocks of this space: one :class:`ScheduleError` whose message starts with
        the field (``blocks["x"]`` for ``path="blocks"`` with a mapping, ``policy.blocks[i]`` for a list)."""
        for i, name in enumerate(names):
            if name not in self._index:
                field = f'{path}["{name}"]' if path == "blocks" else f"{path}[{i}]"
                try:
                    self.get(name)
                except ScheduleError as e:
                    raise ScheduleError(f"{field}: {e}") from None

    def names(self, kind: BlockKind | None = None) -> tuple[str, ...]:
        """Block names in execution order, optionally only of one granularity.

        Without ``kind``: stages and layers. Components (finer than layers) are listed only when asked for
        with ``BlockKind.COMPONENT``, so code that walks "every block" keeps seeing disjoint layers."""
        if kind is None:
            return tuple(b.name for b in self.blocks if b.kind is not BlockKind.COMPONENT)
        return tuple(b.name for b in self.blocks if b.kind is kind)

    def children(self, stage: str) -> tuple[str, ...]:
        """Blocks directly inside ``stage`` (a stage's layers, an attention layer's components), in order."""
        return tuple(b.name for b in self.blocks if b.parent == stage)

    def with_role(self, *roles: str) -> tuple[str, ...]:
        """Names of the blocks whose role is one of ``roles``, in execution order."""
        return tuple(b.name for b in self.blocks if b.role in roles)

    def attention_components(self) -> tuple[str, ...]:
        """Names of the attention modules among the components (``attention=True``), in execution order."""
        return tuple(b.name for b in self.blocks if b.kind is BlockKind.COMPONENT and b.attention)

    def order(self, names: Sequence[str]) -> tuple[str, ...]:
        """Sort block names into execution order (raises on unknown names)."""
        for n in names:
            self.get(n)
        pos = {b.name: i for i, b in enumerate(self.blocks)}
        return tuple(sorted(names, key=pos.__getitem__))

    def check_disjoint(self, names: Sequence[str]) -> None:
        """Refuse a set of blocks where one contains another (a stage and one of its layers)."""
        chosen = set(names)
        for n in names:
            parent = self.get(n).parent
            while parent is not None and parent not in chosen:
                parent = self.get(parent).parent
            if parent is not None:
                raise ScheduleError(
                    f'blocks["{n}"] is inside blocks["{parent}"], which is also listed; list either the '
                    f"stage or its layers, not both"
                )

    def coarsen(self, masks: Mapping[str, str]) -> dict[str, str]:
        """Merge layer masks into their stage where every layer of the stage has the same mask.

        Fewer hooked modules means less Python overhead at run time; the semantics are unchanged because a
        stage whose layers all reuse their stored outputs returns the stored outputs of the stage.
        """
        out: dict[str, str] = {}
        done: set[str] = set()
        for name in self.order(list(masks)):
            info = self.get(name)
            if info.kind is BlockKind.COMPONENT:
                # never merged: an attention layer whose components all reuse still recomputes its
                # projections and norms around them, which is not the same as reusing the layer
                out[name] = masks[name]
                continue
            if info.parent is None or info.parent in done:
                if info.parent is None:
                    out[name] = masks[name]
                continue
            siblings = self.children(info.parent)
            if all(s in masks and masks[s] == masks[name] for s in siblings):
                out[info.parent] = masks[name]
                done.add(info.parent)
            else:
                out[name] = masks[name]
        return {n: out[n] for n in self.order(list(out))}

    def cost_ratio(self, masks: Mapping[str, str], num_steps: int) -> float | None:
        """Analytic cost of a mask relative to full compute (1.0), from per-block MACs.

        A listed block costs its MACs at each ``R`` step and nothing at ``.`` steps; everything not listed
        runs every step. Returns ``None`` when MACs are unknown.
        """
        if self.other_macs is None or any(b.macs is None for b in self.blocks if b.kind is BlockKind.STAGE):
            return None
        stages = [b for b in self.blocks if b.kind is BlockKind.STAGE]
        full = self.other_macs + sum(b.macs or 0 for b in stages)
        if full <= 0:
            return None
        listed_below: set[str] = set()  # blocks with a listed block somewhere inside them
        for name in masks:
            parent = self.get(name).parent
            while parent is not None:
                listed_below.add(parent)
                parent = self.get(parent).parent

        def cost(name: str, step: int) -> float:
            info = self.get(name)
            if name in masks:
                return float(info.macs or 0) if masks[name][step] == "R" else 0.0
            if name not in listed_below:
                return float(info.macs or 0)
            kids = self.children(name)
            # Work in the block outside its children (concats, norms, projections) always runs.
            rest = max((info.macs or 0) - sum(self.get(k).macs or 0 for k in kids), 0)
            return rest + sum(cost(k, step) for k in kids)

        total = 0.0
        for step in range(num_steps):
            total += float(self.other_macs) + sum(cost(stage.name, step) for stage in stages)
        return total / (full * num_steps)
