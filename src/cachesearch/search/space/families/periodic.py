"""Family ``periodic``: per-block recompute masks in a compact form — for each listed block a period, a phase and
an active window (fractions of the steps), see :class:`~cachesearch.schedule.PeriodicMask`. No baselines."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ....schedule import PeriodicMask, Policy
from ..context import SpaceContext
from ..params import Dist, Fields, FloatParam, IntParam
from ._window import decode_window, encode_window, parse_window, window_dists
from .base import MaskFamily

__all__ = ["PeriodicFamily"]


@dataclass(frozen=True)
class PeriodicFamily(MaskFamily):
    """Per-block period, phase and active window; ``blocks`` is ``stages``, ``layers`` or a list of names."""

    blocks: str | tuple[str, ...]
    period: IntParam
    phase: IntParam
    start: FloatParam
    end: FloatParam

    name: ClassVar[str] = "periodic"
    defaults: ClassVar[Mapping[str, Any]] = {
        "blocks": "stages",
        "period": {"low": 1, "high": 6},
        "phase": {"low": 0, "high": 5},
        "start": {"low": 0.0, "high": 0.5},
        "end": {"low": 0.5, "high": 1.0},
    }

    @classmethod
    def parse(cls, fields: Fields, path: str, section: Mapping[str, Any]) -> PeriodicFamily:
        blocks = section["blocks"]
        if isinstance(blocks, str):
            if blocks not in ("stages", "layers"):
                raise fields.error(f"{path}.blocks", f"expected 'stages', 'layers' or a list of block names, "
                                                     f"got {blocks!r}")
        elif isinstance(blocks, list) and blocks and all(isinstance(b, str) and b for b in blocks):
            if len(set(blocks)) != len(blocks):
                raise fields.error(f"{path}.blocks", f"lists a block twice: {blocks}")
            blocks = tuple(blocks)
        else:
            raise fields.error(f"{path}.blocks", f"expected 'stages', 'layers' or a non-empty list of block "
                                                 f"names like ['up_blocks.1', 'mid_block'], got {blocks!r}")
        return cls(
            blocks=blocks,
            **parse_window(fields, path, section),
        )

    def block_names(self, ctx: SpaceContext) -> tuple[str, ...]:
        """The blocks the family masks, in the model's order (not validated: see :meth:`dists`)."""
        if self.blocks == "stages":
            chosen: tuple[str, ...] = ctx.stages
        elif self.blocks == "layers":
            chosen = tuple(b for b in ctx.blocks if b not in ctx.stages)
        else:
            chosen = tuple(self.blocks)
        return tuple(b for b in ctx.blocks if b in chosen)

    def dists(self, ctx: SpaceContext, fields: Fields) -> list[Dist]:
        if not isinstance(self.blocks, str):
            for i, b in enumerate(self.blocks):
                if b not in ctx.blocks:
                    raise fields.error(f"mask.periodic.blocks[{i}]", f"unknown block {b!r}; this denoiser's stages "
                                                                     f"are {list(ctx.stages)}")
            for i, b in enumerate(self.blocks):
                parent = b.rsplit(".", 2)[0] if b.count(".") >= 2 else None
                if parent in self.blocks:
                    raise fields.error(f"mask.periodic.blocks[{i}]", f"{b!r} is inside {parent!r}, which is also "
                                                                     f"listed; list the stage or its layers")
        out = []
        for b in self.block_names(ctx):
            out += window_dists(fields, f"periodic.{b}", "mask.periodic", self)
        return out

    def policy(self, values: Mapping[str, Any], ctx: SpaceContext, num_steps: int) -> PeriodicMask:
        entries = []
        for b in self.block_names(ctx):
            entries.append((b, *decode_window(values, f"periodic.{b}")))
        return PeriodicMask(blocks=tuple(entries))

    def params(self, policy: Policy | None, ctx: SpaceContext) -> dict[str, Any] | None:
        if not isinstance(policy, PeriodicMask) or [e[0] for e in policy.blocks] != list(self.block_names(ctx)):
            return None
        out: dict[str, Any] = {}
        for b, *window in policy.blocks:
            out.update(encode_window(f"periodic.{b}", *window))
        return out
