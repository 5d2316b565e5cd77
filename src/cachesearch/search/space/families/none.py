"""Family ``none``: no caching (with a step set: fewer steps only; without one: the reference itself)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ....schedule import Full, Policy
from ..context import SpaceContext
from ..params import Dist, Fields
from .base import MaskFamily

__all__ = ["NoCaching"]


@dataclass(frozen=True)
class NoCaching(MaskFamily):
    """No mask: the trial's policy is its step set alone (or full compute)."""

    name: ClassVar[str] = "none"
    section: ClassVar[bool] = False

    @classmethod
    def parse(cls, fields: Fields, path: str, section: Mapping[str, Any]) -> NoCaching:
        return cls()

    def dists(self, ctx: SpaceContext, fields: Fields) -> list[Dist]:
        return []

    def policy(self, values: Mapping[str, Any], ctx: SpaceContext, num_steps: int) -> Policy | None:
        return None

    def params(self, policy: Policy | None, ctx: SpaceContext) -> dict[str, Any] | None:
        return {} if policy is None or isinstance(policy, Full) else None
