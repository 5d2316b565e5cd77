"""The policy bases, the registry of policy families, and :func:`policy_from_dict`.

A policy family is a frozen, keyword-only dataclass of plain values in a module of its own, registered by kind::

    @register_policy
    @dataclass(frozen=True, kw_only=True)
    class MyPolicy(MaskPolicy):
        kind: ClassVar[str] = "mine"
        ...

A policy's ``masks(space, num_steps, call_starts=...)`` returns ``{block: (cond_mask, uncond_mask)}`` over the
blocks of a :class:`BlockSpace`; ``call_starts`` (when the sampler is known) is the index of each step's first
denoiser call, for policies whose periods count calls rather than steps (DeepCache, as the official helper).
:func:`cachesearch.compile_schedule` turns that into a :class:`Schedule`. Policies never name a model class:
everything model-specific comes from the block space.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from .._blockspace import BlockSpace
from .._errors import ScheduleError

if TYPE_CHECKING:  # a sibling family, for the step_set() annotation only
    from .step_set import StepSet

__all__ = [
    "Masks",
    "MaskPolicy",
    "Policy",
    "RuntimePolicy",
    "check_float",
    "check_int",
    "policy_class",
    "policy_format",
    "policy_from_dict",
    "policy_kinds",
    "register_policy",
]

Masks = dict[str, tuple[str, str]]
"""``{block: (cond_mask, uncond_mask)}`` in the block space's execution order."""

P = TypeVar("P", bound=type["Policy"])

_REGISTRY: dict[str, type[Policy]] = {}


def check_int(path: str, value: Any, *, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as an ``int`` (numpy integers accepted, bools refused) within ``[lo, hi]``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ScheduleError(f"{path}: expected an integer, got {value!r}")
    value = int(value)
    if lo is not None and value < lo:
        raise ScheduleError(f"{path}: expected an integer >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise ScheduleError(f"{path}: expected an integer <= {hi}, got {value}")
    return value


def check_float(path: str, value: Any, *, lo: float | None = None, strict_lo: bool = False) -> float:
    """``value`` as a finite ``float`` (ints accepted, bools refused) ``>= lo`` (``> lo`` with ``strict_lo``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ScheduleError(f"{path}: expected a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ScheduleError(f"{path}: expected a finite number, got {value}")
    if lo is not None and (value <= lo if strict_lo else value < lo):
        raise ScheduleError(f"{path}: expected a number {'>' if strict_lo else '>='} {lo}, got {value}")
    return value


class Policy:
    """Base of all policy families (see the module docstring)."""

    kind: ClassVar[str]
    since_format: ClassVar[int] = 1
    """The schedule-file format version (``cachesearch/schedule@N``) that introduced this kind: a schedule made
    by it is written in at least that version, so older readers refuse it by its format, not its policy."""

    def masks(
        self, space: BlockSpace, num_steps: int, *, call_starts: Sequence[int] | None = None
    ) -> Masks:  # pragma: no cover - abstract
        raise NotImplementedError

    def step_set(self) -> StepSet | None:
        """The step set this policy carries (it decides the sampler's steps), or ``None``."""
        return None

    def reuse(self) -> tuple[str, int | None] | None:
        """The reuse mode (and Taylor order) this policy's masks are made for, or ``None`` (any; default
        ``output``). :func:`cachesearch.compile_schedule` uses it when no ``reuse`` is given; a ``taylor``
        policy (TaylorSeer) refuses any other."""
        return None

    def taylor_guard(self) -> bool:
        """Whether this policy's ``taylor`` forecasts fall back to a lower order where they diverge
        (:attr:`cachesearch.Schedule.taylor_guard`); ``False`` unless the policy has a ``guard`` field set."""
        return False

    def retime(
        self, masks: Mapping[str, tuple[str, str]], num_steps: int, *, call_starts: Sequence[int] | None = None
    ) -> tuple[Policy, Masks]:
        """This policy and its masks for ``num_steps`` steps, from the masks it compiled to (no model needed).

        Used by :meth:`Schedule.for_steps`. Families whose masks cannot be re-derived from their own output
        refuse with a :class:`ScheduleError` that says what to do.
        """
        raise ScheduleError(
            f"policy: a '{self.kind}' schedule cannot be re-compiled for another step count without the model; "
            f"compile it again: cs.compile_schedule(pipe, policy, num_inference_steps={num_steps})"
        )

    def default_name(self, num_steps: int) -> str:
        """A short file-friendly name for this policy compiled over ``num_steps`` steps."""
        return self.kind

    def to_dict(self) -> dict[str, Any]:
        """Plain-value description for a schedule file's ``policy`` field."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):  # type: ignore[arg-type]
            if not f.init:
                continue
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, args: Mapping[str, Any], path: str) -> Policy:
        """Rebuild from ``to_dict()`` less its ``kind`` (``path`` names the field in errors).

        The default accepts exactly the dataclass's init fields; families with nested or tuple fields override it.
        """
        valid = {f.name for f in fields(cls) if f.init}  # type: ignore[arg-type]
        unknown = set(args) - valid
        if unknown:
            raise ScheduleError(
                f"{path}: unknown keys {sorted(unknown)} for kind {cls.kind!r}; expected {sorted(valid)}"
            )
        try:
            return cls(**args)
        except TypeError as e:
            raise ScheduleError(f"{path}: {e}") from e


class MaskPolicy(Policy):
    """A policy that decides which blocks recompute at each step (as opposed to which steps run)."""


class RuntimePolicy(Policy):
    """A policy that a library's own cache carries out at run time (diffusers' hooks, cache-dit): it compiles to a
    runtime schedule (the library, its version and plain configs), not to masks.

    Subclasses name their ``library`` (a key of :data:`~cachesearch.schedule._runtime.LIBRARIES`) and return the
    configs of its ``enable_cache`` by argument name from :meth:`library_configs`.
    """

    library: ClassVar[str]
    since_format: ClassVar[int] = 4

    def library_configs(self) -> dict[str, Any]:  # pragma: no cover - abstract
        """``{enable_cache argument: LibraryConfig}`` (unset optional ones left out)."""
        raise NotImplementedError

    def masks(self, space: BlockSpace, num_steps: int, *, call_starts: Sequence[int] | None = None) -> Masks:
        raise ScheduleError(
            f"policy: a '{self.kind}' policy is carried out by {self.library}'s own cache at run time; it has no "
            f"masks: compile it with cs.compile_schedule(pipe, policy, num_inference_steps=...)"
        )


def register_policy(cls: P) -> P:
    """Class decorator: make ``cls`` loadable by :func:`policy_from_dict` under ``cls.kind``.

    Raises ``TypeError`` for a class that is not a :class:`Policy` with a string ``kind``, and ``ValueError``
    when another class already holds that kind.
    """
    if not isinstance(cls, type) or not issubclass(cls, Policy):
        raise TypeError(f"register_policy: expected a Policy subclass, got {cls!r}")
    kind = cls.__dict__.get("kind")
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"register_policy: {cls.__qualname__} needs its own non-empty `kind: ClassVar[str]`")
    old = _REGISTRY.get(kind)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"register_policy: kind {kind!r} is already registered by {old.__module__}.{old.__qualname__}")
    _REGISTRY[kind] = cls
    return cls


def policy_kinds() -> tuple[str, ...]:
    """The registered kinds, sorted."""
    return tuple(sorted(_REGISTRY))


def policy_class(kind: str) -> type[Policy]:
    """The policy family registered under ``kind``."""
    try:
        return _REGISTRY[kind]
    except (KeyError, TypeError):
        raise ScheduleError(f"policy.kind: expected one of {sorted(_REGISTRY)}, got {kind!r}") from None


def policy_format(data: Mapping[str, Any]) -> int:
    """The format version a schedule with this ``policy`` mapping needs: the newest ``since_format`` of the kinds
    in it (nested ones too, e.g. a joint policy's mask); 1 for unknown kinds (the parser refuses those)."""
    version = 1
    if isinstance(data, Mapping):
        cls = _REGISTRY.get(data.get("kind")) if isinstance(data.get("kind"), str) else None
        if cls is not None:
            version = cls.since_format
        for value in data.values():
            if isinstance(value, Mapping):
                version = max(version, policy_format(value))
    return version


def policy_from_dict(data: Mapping[str, Any], path: str = "policy") -> Policy:
    """Rebuild a policy from its ``to_dict()`` form (the ``policy`` field of a schedule file).

    ``blockmask`` provenance carries no masks (they are the schedule's ``blocks``) and ``blockcaching``
    carries no profile, so those come back without them.
    """
    if not isinstance(data, Mapping) or "kind" not in data:
        raise ScheduleError(f"{path}: expected a mapping with a 'kind' key")
    kind = data["kind"]
    cls = _REGISTRY.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ScheduleError(f"{path}.kind: expected one of {sorted(_REGISTRY)}, got {kind!r}")
    return cls.from_dict({k: v for k, v in data.items() if k != "kind"}, path)
