"""``PerBranch``: a mask policy on one classifier-free-guidance branch only; the other recomputes every step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .._blockspace import BlockSpace
from .._errors import ScheduleError
from .base import MaskPolicy, Masks, Policy, policy_from_dict, register_policy

__all__ = ["PerBranch"]

BRANCHES = ("cond", "uncond")


@register_policy
@dataclass(frozen=True, kw_only=True)
class PerBranch(MaskPolicy):
    """``mask``'s schedule on the ``branch`` half of the CFG batch (``"uncond"`` or ``"cond"``); the other half
    recomputes every block at every step. The applier runs the recomputing half alone where the masks differ.

    E.g. ``PerBranch(mask=DeepCache(interval=3, branch=0), branch="uncond")``: the unconditional prediction, which
    guidance scales less, is cached; the conditional one is exact.
    """

    kind: ClassVar[str] = "perbranch"
    since_format: ClassVar[int] = 3  # readers before @3 do not know the kind
    mask: MaskPolicy
    branch: str = "uncond"

    def __post_init__(self) -> None:
        if not isinstance(self.mask, MaskPolicy) or isinstance(self.mask, PerBranch):
            raise ScheduleError("policy.mask: expected a shared mask policy (DeepCache, BlockMask, ...)")
        if self.branch not in BRANCHES:
            raise ScheduleError(f"policy.branch: expected one of {list(BRANCHES)}, got {self.branch!r}")

    def _split(self, masks: Mapping[str, tuple[str, str]], num_steps: int) -> Masks:
        full = "R" * num_steps
        if self.branch == "uncond":
            return {b: (full, u) for b, (_, u) in masks.items()}
        return {b: (c, full) for b, (c, _) in masks.items()}

    def masks(self, space: BlockSpace, num_steps: int, *, call_starts: Sequence[int] | None = None) -> Masks:
        return self._split(self.mask.masks(space, num_steps, call_starts=call_starts), num_steps)

    def retime(self, masks, num_steps, *, call_starts=None):  # noqa: D102 - see Policy.retime
        side = 1 if self.branch == "uncond" else 0
        inner, new = self.mask.retime({b: (m[side], m[side]) for b, m in masks.items()}, num_steps,
                                      call_starts=call_starts)
        return PerBranch(mask=inner, branch=self.branch), self._split(new, num_steps)  # type: ignore[arg-type]

    def default_name(self, num_steps: int) -> str:
        return f"{self.mask.default_name(num_steps)}-{self.branch}only"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "mask": self.mask.to_dict(), "branch": self.branch}

    @classmethod
    def from_dict(cls, args: Mapping[str, Any], path: str) -> Policy:
        extra = set(args) - {"mask", "branch"}
        if extra:
            raise ScheduleError(f"{path}: unknown keys {sorted(extra)}")
        mask = policy_from_dict(args.get("mask", {}), f"{path}.mask")
        return PerBranch(mask=mask, branch=args.get("branch", "uncond"))  # type: ignore[arg-type]
