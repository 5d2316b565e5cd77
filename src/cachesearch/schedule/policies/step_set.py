"""``StepSet``: which sampler steps run ("fewer steps" on its own, or the step half of a ``Joint``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .._blockspace import BlockSpace
from .._errors import ScheduleError
from .base import Masks, Policy, check_float, check_int, register_policy
from .full import Full

__all__ = ["StepSet"]

_SPACINGS = ("scheduler", "linear", "power")


@register_policy
@dataclass(frozen=True, kw_only=True)
class StepSet(Policy):
    """Which sampler steps run.

    Either ``count`` steps with a spacing rule, or explicit ``timesteps`` (descending, in the scheduler's
    training range). Spacing ``"scheduler"`` uses the scheduler's own spacing for ``count`` steps (works
    with every scheduler); ``"linear"`` and ``"power"`` produce explicit timesteps
    ``t_i = (T-1) * (1 - i/count) ** power`` and need a scheduler that accepts ``timesteps=``.
    As a policy on its own, a step set recomputes every block at every step ("fewer steps").
    """

    kind: ClassVar[str] = "steps"
    count: int | None = None
    spacing: str = "scheduler"
    power: float = 1.0
    timesteps: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if (self.count is None) == (self.timesteps is None):
            raise ScheduleError("StepSet: give exactly one of `count` or `timesteps`")
        if self.count is not None:
            object.__setattr__(self, "count", check_int("policy.count", self.count, lo=1))
        if self.spacing not in _SPACINGS:
            raise ScheduleError(f"policy.spacing: expected one of {list(_SPACINGS)}, got {self.spacing!r}")
        object.__setattr__(self, "power", check_float("policy.power", self.power, lo=0.0, strict_lo=True))
        if self.timesteps is not None:
            ts = tuple(check_int(f"policy.timesteps[{i}]", t, lo=0) for i, t in enumerate(self.timesteps))
            if not ts or any(a <= b for a, b in zip(ts, ts[1:])):
                raise ScheduleError("policy.timesteps: expected a non-empty, strictly descending list")
            object.__setattr__(self, "timesteps", ts)

    def resolve(self, num_train_timesteps: int) -> tuple[int, tuple[int, ...] | None]:
        """Return ``(num_steps, explicit timesteps or None)`` for a scheduler with that training range."""
        if self.timesteps is not None:
            if self.timesteps[0] >= num_train_timesteps:
                raise ScheduleError(
                    f"policy.timesteps: {self.timesteps[0]} is outside the scheduler's range "
                    f"0..{num_train_timesteps - 1}"
                )
            return len(self.timesteps), self.timesteps
        assert self.count is not None  # __post_init__ guarantees count or timesteps
        if self.spacing == "scheduler":
            return self.count, None
        p = 1.0 if self.spacing == "linear" else self.power
        top = num_train_timesteps - 1
        ts: list[int] = []
        for i in range(self.count):
            t = round(top * (1 - i / self.count) ** p)
            t = min(t, ts[-1] - 1) if ts else t
            ts.append(t)
        if ts[-1] < 0:
            raise ScheduleError(f"policy.count: {self.count} steps do not fit into {num_train_timesteps} timesteps")
        return self.count, tuple(ts)

    def masks(self, space: BlockSpace, num_steps: int, *, call_starts: Sequence[int] | None = None) -> Masks:
        return Full().masks(space, num_steps)

    def step_set(self) -> StepSet:
        return self

    def retime(self, masks, num_steps, *, call_starts=None):  # noqa: D102 - see Policy.retime
        if self.timesteps is not None or self.spacing != "scheduler":
            raise ScheduleError(
                "policy: a step set with explicit or linear/power-spaced timesteps depends on the scheduler's "
                f"training range; compile it again: cs.compile_schedule(pipe, StepSet(count={num_steps}, ...))"
            )
        full = "R" * num_steps
        return StepSet(count=num_steps), {n: (full, full) for n in masks}

    def default_name(self, num_steps: int) -> str:
        return f"steps{num_steps}" + ("" if self.spacing == "scheduler" else f"-{self.spacing}")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind}
        if self.timesteps is not None:
            d["timesteps"] = list(self.timesteps)
        else:
            d.update(count=self.count, spacing=self.spacing)
            if self.spacing == "power":
                d["power"] = self.power
        return d

    @classmethod
    def from_dict(cls, args: Mapping[str, Any], path: str) -> Policy:
        args = dict(args)
        if args.get("timesteps") is not None:
            args["timesteps"] = tuple(args["timesteps"])
        return super().from_dict(args, path)
