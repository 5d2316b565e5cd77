"""``WithScaleShift``: a mask policy whose reused outputs get Block Caching's fitted per-channel scale-shift."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .._blockspace import BlockSpace
from .._errors import ScheduleError
from .base import MaskPolicy, Masks, Policy, policy_from_dict, register_policy

__all__ = ["FIT_METHODS", "WithScaleShift", "scale_shift_request"]

FIT_METHODS = ("lstsq", "distill")


@register_policy
@dataclass(frozen=True, kw_only=True)
class WithScaleShift(MaskPolicy):
    """``mask``'s schedule plus a request for a scale-shift fitted with ``method`` (``"lstsq"`` or ``"distill"``).

    Compiling gives ``mask``'s masks (a schedule needs data to be fitted: compilation never does it);
    ``cachesearch.evaluate.Evaluator.compile`` fits the scale-shift on its train prompts, which is how a search
    makes scale-shift on/off one of its dimensions. Outside the search, call ``cs.fit_scale_shift`` directly.
    """

    kind: ClassVar[str] = "scaleshift"
    since_format: ClassVar[int] = 3  # readers before @3 do not know the kind
    mask: MaskPolicy
    method: str = "lstsq"

    def __post_init__(self) -> None:
        if not isinstance(self.mask, MaskPolicy) or isinstance(self.mask, WithScaleShift):
            raise ScheduleError("policy.mask: expected a mask policy (DeepCache, BlockMask, ...)")
        if self.method not in FIT_METHODS:
            raise ScheduleError(f"policy.method: expected one of {list(FIT_METHODS)}, got {self.method!r}")

    def masks(self, space: BlockSpace, num_steps: int, *, call_starts: Sequence[int] | None = None) -> Masks:
        return self.mask.masks(space, num_steps, call_starts=call_starts)

    def retime(self, masks, num_steps, *, call_starts=None):  # noqa: D102 - see Policy.retime
        inner, new = self.mask.retime(masks, num_steps, call_starts=call_starts)
        return WithScaleShift(mask=inner, method=self.method), new  # type: ignore[arg-type]

    def default_name(self, num_steps: int) -> str:
        return f"{self.mask.default_name(num_steps)}-ss{self.method}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "mask": self.mask.to_dict(), "method": self.method}

    @classmethod
    def from_dict(cls, args: Mapping[str, Any], path: str) -> Policy:
        extra = set(args) - {"mask", "method"}
        if extra:
            raise ScheduleError(f"{path}: unknown keys {sorted(extra)}")
        mask = policy_from_dict(args.get("mask", {}), f"{path}.mask")
        return WithScaleShift(mask=mask, method=args.get("method", "lstsq"))  # type: ignore[arg-type]


def scale_shift_request(policy: Policy | Mapping[str, Any] | None) -> str | None:
    """The fit method a policy (or its ``to_dict()``) asks for, looking inside ``Joint``/``PerBranch``; ``None``
    when it asks for none."""
    d = policy.to_dict() if isinstance(policy, Policy) else policy
    while isinstance(d, Mapping):
        if d.get("kind") == "scaleshift":
            return str(d.get("method", "lstsq"))
        d = d.get("mask")
    return None
