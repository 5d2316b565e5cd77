"""The search side of a policy family: the protocol every family implements, and the registry.

A family turns its section of a space file into parameters, those parameters into Optuna distributions for one
model, a trial's values into a policy (a pure function of the values, so ``optuna.trial.FixedTrial`` replays
it), a policy back into values (how baselines are enqueued), and lists its heuristic baselines.

The step set (the file's ``steps:`` section, :class:`~.steps.Steps`) is a family too; the mask families
(``mask.families``) are registered here in the order their parameters are suggested. A new family is one
file in this package and one :func:`register` call in its ``__init__``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ....schedule import BlockSpace, Policy
from ..context import SpaceContext
from ..params import Dist, Fields, is_int, is_num

if TYPE_CHECKING:
    from ....evaluate._baselines import Baseline

__all__ = ["BaselineGrid", "Family", "MaskFamily", "mask_families", "register"]


@dataclass(frozen=True)
class BaselineGrid:
    """The grid a space file may give a family's baselines: ``baselines.<family>: {<key>: [...]}``.

    Values are integers ``>= lo`` (``integer``) or numbers ``> lo``; all ``<= hi`` when ``hi`` is set.
    """

    key: str
    integer: bool
    lo: float
    hi: float | None = None

    def parse(self, fields: Fields, path: str, items: Any) -> list[Any]:
        if not isinstance(items, list) or not items:
            raise fields.error(path, f"expected a non-empty list, got {items!r}")
        for i, v in enumerate(items):
            ok = is_int(v) if self.integer else is_num(v)
            if not ok or v < self.lo or (self.hi is not None and v > self.hi) or (not self.integer and v == self.lo):
                what = f"an integer >= {int(self.lo)}" if self.integer else f"a number > {self.lo}"
                what += f" and <= {self.hi}" if self.hi is not None else ""
                raise fields.error(f"{path}[{i}]", f"expected {what}, got {v!r}")
        return list(items)


class Family(ABC):
    """One policy family's search side, holding the parameters its section of a space file gives.

    Class attributes:
        name: the family's name: its key in ``mask.families`` / ``mask.<name>`` and its baseline kind.
        section: whether the family has a section in the file (``mask.<name>``); ``none`` has not.
        defaults: the keys its section allows, with the value each takes when the file omits it.
        required: keys the section must give.
        grid: the grid its baselines take from ``baselines.<name>``, or None when it has no baselines.
    """

    name: ClassVar[str]
    section: ClassVar[bool] = True
    defaults: ClassVar[Mapping[str, Any]] = {}
    required: ClassVar[frozenset[str]] = frozenset()
    grid: ClassVar[BaselineGrid | None] = None

    # -- the space file --------------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def parse(cls, fields: Fields, path: str, section: Mapping[str, Any]) -> Family:
        """The family's parameters from its section (``defaults`` already applied; raises SpaceError)."""

    # -- one model ---------------------------------------------------------------------------------------
    @classmethod
    def supports(cls, blocks: BlockSpace) -> bool:
        """Whether a denoiser with this block space can run the family (the default space drops it if not)."""
        return True

    @abstractmethod
    def dists(self, ctx: SpaceContext, fields: Fields) -> list[Dist]:
        """The Optuna distributions of the family's parameters for one model (raises SpaceError if a range
        does not fit it), in suggestion order."""

    def notes(self, ctx: SpaceContext) -> list[str]:
        """What the user should know about how the family was fitted to the model."""
        return []

    # -- trials ----------------------------------------------------------------------------------------
    @abstractmethod
    def policy(self, values: Mapping[str, Any], ctx: SpaceContext, num_steps: int) -> Policy | None:
        """The family's policy for a trial's parameter ``values`` (pure). ``num_steps``: the steps the policy
        runs over (the trial's step count, or the reference's)."""

    @abstractmethod
    def params(self, policy: Policy | None, ctx: SpaceContext) -> dict[str, Any] | None:
        """Parameter values under which :meth:`policy` gives ``policy``, or None if the family cannot give it.
        Parameters it does not need are left out (they get their range's neutral value)."""

    def same(self, a: Policy, b: Policy) -> bool:
        """Whether two of the family's policies describe the same schedule."""
        return a == b

    # -- baselines --------------------------------------------------------------------------------------
    @classmethod
    def expressible(cls, has_steps: bool, families: Sequence[str]) -> str | None:
        """Why a space cannot express the family's baselines (None when it can)."""
        return None if cls.name in families else f"family {cls.name!r} in mask.families"

    def baselines(self, ctx: SpaceContext, grid: Sequence[Any] | None) -> list[Baseline]:
        """The family's heuristic baselines for the model (``grid``: from the space file, None = defaults)."""
        return []


class MaskFamily(Family):
    """A family listed in ``mask.families``: one is chosen per trial (parameter ``mask.family``).

    Class attributes:
        reference_steps: True when the family always runs the reference steps (its policy ignores the step
            set); otherwise a trial's step set and mask combine into a ``Joint`` policy.
    """

    reference_steps: ClassVar[bool] = False


_REGISTRY: dict[str, type[MaskFamily]] = {}


def register(cls: type[MaskFamily]) -> type[MaskFamily]:
    """Add a mask family (its parameters are suggested after those of the families registered before)."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"a search family named {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def mask_families() -> dict[str, type[MaskFamily]]:
    """The registered mask families by name, in registration order."""
    return dict(_REGISTRY)
