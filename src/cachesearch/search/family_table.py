"""Which kind of schedule wins on this model: the best schedule of each family at a few cost budgets.

For every family of the run (the space's ``mask.family`` choices; a trial of ``none`` that only drops steps counts
as ``steps``) and every budget ``c`` of :data:`FAMILY_COSTS`: among its completed, feasible trials whose objective
(cost ratio, or latency ratio) is at most ``c``, the one with the lowest *train* loss (held-out is not used to
choose), then validated on the held-out prompts. Static families (masks) and runtime families (a library's own
cache, cost counted per image) are marked, so the table says whether a deployed runtime cache or a searched mask
is better here at each budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from .space.families import RuntimeFamily, mask_families

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from ..evaluate import EvalResult

__all__ = ["FAMILY_COSTS", "FamilyBest", "family_kind", "family_table", "trial_family"]

FAMILY_COSTS = (0.3, 0.5, 0.7)
"""The budgets of the table (objective, e.g. cost ratio, at most)."""


@dataclass(frozen=True)
class FamilyBest:
    """The best trial of one family within one budget (``trial`` None: the family has none that cheap)."""

    family: str
    kind: str
    max_cost: float
    trial: int | None = None
    cost: float | None = None
    train: float | None = None
    heldout: float | None = None
    cost_heldout: float | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``index.yaml`` form (unset fields left out)."""
        return {k: v for k, v in asdict(self).items() if v is not None or k in ("family", "kind", "max_cost")}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FamilyBest:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def family_kind(family: str) -> str:
    """``runtime`` for a family of a library's own cache, else ``static``."""
    cls = mask_families().get(family)
    return "runtime" if cls is not None and issubclass(cls, RuntimeFamily) else "static"


def trial_family(trial: FrozenTrial, families: tuple[str, ...]) -> str:
    """The family a trial chose (``steps`` for a ``none`` trial that drops steps, ``none`` for full compute)."""
    family = trial.params.get("mask.family", families[0] if families else "none")
    if family == "none":
        kind = (trial.user_attrs.get("policy") or {}).get("kind")
        return "steps" if kind in ("steps", "joint") else "none"
    return str(family)


def family_table(trials: list[FrozenTrial], families: tuple[str, ...],
                 heldout: Callable[[FrozenTrial], EvalResult | str], costs: tuple[float, ...] = FAMILY_COSTS
                 ) -> list[FamilyBest]:
    """One row per family (in the space's order, ``steps`` first) and budget; ``heldout(trial)`` evaluates a chosen
    trial on the held-out prompts (or returns why it could not)."""
    from optuna.trial import TrialState

    done = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None
            and all(v <= 0 for v in (t.constraints or {}).values())]
    by_family: dict[str, list[FrozenTrial]] = {}
    for t in done:
        by_family.setdefault(trial_family(t, families), []).append(t)
    order = [f for f in ("steps", *families) if f != "none" and f in by_family]
    rows: list[FamilyBest] = []
    validated: dict[int, EvalResult | str] = {}
    for family in order:
        for c in costs:
            fits = [t for t in by_family[family] if t.values[1] <= c + 1e-9 and math.isfinite(t.values[0])]
            if not fits:
                rows.append(FamilyBest(family=family, kind=family_kind(family), max_cost=c))
                continue
            best = min(fits, key=lambda t: (t.values[0], t.values[1], t.number))
            if best.number not in validated:
                validated[best.number] = heldout(best)
            res = validated[best.number]
            common = {"family": family, "kind": family_kind(family), "max_cost": c, "trial": best.number,
                      "cost": best.values[1], "train": best.values[0]}
            if isinstance(res, str) or not res.valid:
                rows.append(FamilyBest(**common, reason=res if isinstance(res, str) else res.reason))
            else:
                rows.append(FamilyBest(**common, heldout=res.quality, cost_heldout=res.cost_ratio))
    return rows
