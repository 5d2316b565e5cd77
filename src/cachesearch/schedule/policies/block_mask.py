"""``BlockMask``: explicit R/. masks per block (optionally per CFG branch)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .._blockspace import BlockSpace
from .._errors import ScheduleError
from .._mask import check_block_name, check_mask
from .base import MaskPolicy, Masks, Policy, register_policy

__all__ = ["BlockMask"]


@register_policy
@dataclass(frozen=True, kw_only=True)
class BlockMask(MaskPolicy):
    """Explicit masks: ``BlockMask({"up_blocks.1": "R..R..", ...})``.

    A value may be a mask string or ``{"cond": ..., "uncond": ...}`` for per-branch CFG masks. Blocks not
    listed recompute every step.
    """

    kind: ClassVar[str] = "blockmask"
    blocks: tuple[tuple[str, str, str], ...]

    def __init__(self, blocks: Mapping[str, str | Mapping[str, str]] | None = None, **kw: Any) -> None:
        if blocks is None:
            blocks = kw.pop("masks", None)
        if kw:
            raise TypeError(f"BlockMask got unexpected arguments {sorted(kw)}")
        if not isinstance(blocks, Mapping) or not blocks:
            raise ScheduleError("BlockMask: expected a non-empty mapping of block name → mask")
        items = []
        for name, m in blocks.items():
            path = f'blocks["{name}"]'
            check_block_name(path, name)
            if isinstance(m, Mapping):
                extra = set(m) - {"cond", "uncond"}
                if extra or not {"cond", "uncond"} <= set(m):
                    raise ScheduleError(f"{path}: expected keys 'cond' and 'uncond', got {sorted(m)}")
                items.append((name, m["cond"], m["uncond"]))
            else:
                items.append((name, m, m))
        object.__setattr__(self, "blocks", tuple(items))

    def masks(self, space: BlockSpace, num_steps: int, *, call_starts: Sequence[int] | None = None) -> Masks:
        names = [n for n, _, _ in self.blocks]
        space.check_names(names)
        space.check_disjoint(names)
        out = {}
        for name, c, u in self.blocks:
            path = f'blocks["{name}"]'
            check_mask(path if c == u else path + ".cond", c, num_steps)
            check_mask(path + ".uncond", u, num_steps)
            out[name] = (c, u)
        return {n: out[n] for n in space.order(names)}

    def to_dict(self) -> dict[str, Any]:
        # The masks themselves are the schedule's `blocks`; repeating them in the provenance adds nothing.
        return {"kind": self.kind}

    @classmethod
    def from_dict(cls, args: Mapping[str, Any], path: str) -> Policy:
        if set(args) - {"blocks"}:
            raise ScheduleError(f"{path}: unknown keys {sorted(set(args) - {'blocks'})}")
        return _ProvenanceOnly.of("blockmask")


@dataclass(frozen=True, kw_only=True)
class _ProvenanceOnly(MaskPolicy):
    """A policy known only by its kind (explicit masks live in the schedule itself)."""

    kind: ClassVar[str] = "blockmask"
    name: str = "blockmask"

    @staticmethod
    def of(name: str) -> _ProvenanceOnly:
        return _ProvenanceOnly(name=name)

    def masks(self, space: BlockSpace, num_steps: int, *, call_starts: Sequence[int] | None = None) -> Masks:
        raise ScheduleError("this policy was loaded from a file without its masks; use the schedule's blocks")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.name}
