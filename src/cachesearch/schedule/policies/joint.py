"""``Joint``: a step set combined with a mask policy compiled over those steps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .._blockspace import BlockSpace
from .._errors import ScheduleError
from .base import MaskPolicy, Masks, Policy, policy_from_dict, register_policy
from .step_set import StepSet

__all__ = ["Joint"]


@register_policy
@dataclass(frozen=True, kw_only=True)
class Joint(Policy):
    """A step set combined with a mask policy compiled over those steps."""

    kind: ClassVar[str] = "joint"
    steps: StepSet
    mask: MaskPolicy

    def __post_init__(self) -> None:
        if not isinstance(self.steps, StepSet):
            raise ScheduleError("policy.steps: expected a StepSet")
        if not isinstance(self.mask, MaskPolicy):
            raise ScheduleError("policy.mask: expected a mask policy (DeepCache, BlockMask, ...)")

    def masks(self, space: BlockSpace, num_steps: int, *, call_starts: Sequence[int] | None = None) -> Masks:
        return self.mask.masks(space, num_steps, call_starts=call_starts)

    def step_set(self) -> StepSet:
        return self.steps

    def reuse(self) -> tuple[str, int | None] | None:
        return self.mask.reuse()

    def retime(self, masks, num_steps, *, call_starts=None):  # noqa: D102 - see Policy.retime
        steps, _ = self.steps.retime(masks, num_steps)
        mask, new = self.mask.retime(masks, num_steps, call_starts=call_starts)
        return Joint(steps=steps, mask=mask), new

    def default_name(self, num_steps: int) -> str:
        return f"{self.steps.default_name(num_steps)}-{self.mask.default_name(num_steps)}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "steps": self.steps.to_dict(), "mask": self.mask.to_dict()}

    @classmethod
    def from_dict(cls, args: Mapping[str, Any], path: str) -> Policy:
        steps = policy_from_dict(args.get("steps", {}), f"{path}.steps")
        mask = policy_from_dict(args.get("mask", {}), f"{path}.mask")
        extra = set(args) - {"steps", "mask"}
        if extra:
            raise ScheduleError(f"{path}: unknown keys {sorted(extra)}")
        return Joint(steps=steps, mask=mask)  # type: ignore[arg-type]
