"""The crossed warm start (``--warm-start crossed``): once every baseline has finished, the
baselines of the caching families that made the baselines' front are each combined with the step-set baselines
(fewer steps) and enqueued — the combinations a front of step sets × masks is made of, proposed before the sampler
has to find them (docs/search-efficiency.md says what it buys).

The step-set baselines are the ``steps`` trials (``baseline_kind: steps``); a family that always runs the reference
steps (runtime caches, profile-placed ones) is not crossed. The crossed trials are ordinary sampled trials
(``warm_start: cross``; screened like them); one process of a shared study enqueues them
(:meth:`~.claims.Claims.first`), once per study (the study attribute :data:`ATTR_CROSSED` records how many).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .attrs import ATTR_BASELINE, ATTR_BASELINE_KIND
from .trials import FULL_COMPUTE, dominates

if TYPE_CHECKING:
    import optuna

    from .claims import Claims
    from .executors.base import Prepared
    from .space import ResolvedSpace

__all__ = ["ATTR_CROSSED", "Crossing", "crossed_params"]

ATTR_CROSSED = "cachesearch.crossed"
"""Study attribute: ``{"enqueued": n, "crossed": [baseline names]}`` once the crossed trials are enqueued."""
STEPS_KIND = "steps"


def _feasible(trial: Any) -> bool:
    return all(c <= 0 for c in trial.system_attrs.get("constraints") or ())


def _front(trials: Sequence[Any]) -> list[Any]:
    """The non-dominated trials by (loss, cost) among ``trials`` (finished, feasible, below full compute)."""
    pts = [t for t in trials if t.values is not None and t.values[1] < FULL_COMPUTE and _feasible(t)]
    return [t for t in pts if not any(dominates(o.values, t.values) for o in pts)]


def crossed_params(space: ResolvedSpace, baselines: Sequence[Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """Parameters of the crossed trials for these finished baseline trials, and the baselines crossed: each
    non-``steps`` baseline on their front whose family takes a step set, with each ``steps`` baseline's step set
    (step sets in baseline order, each with every such baseline; without repeats)."""
    from optuna.trial import TrialState

    done = [t for t in baselines if t.state == TrialState.COMPLETE]
    steps = [t for t in done if t.user_attrs.get(ATTR_BASELINE_KIND) == STEPS_KIND]
    masks = [t for t in sorted(_front(done), key=lambda t: t.number)
             if t.user_attrs.get(ATTR_BASELINE_KIND) != STEPS_KIND]
    out: list[dict[str, Any]] = []
    seen: set[tuple[tuple[str, Any], ...]] = set()
    crossed: dict[str, None] = {}
    for s in steps:  # step set by step set: a search stopped early has tried every mask with the first ones
        for m in masks:
            params = space.with_steps(m.params, s.params)
            key = None if params is None else tuple(sorted(params.items()))
            if key is None or key in seen:
                continue
            seen.add(key)
            out.append(params)  # type: ignore[arg-type]
            crossed[str(m.user_attrs.get(ATTR_BASELINE))] = None
    return out, list(crossed)


class Crossing:
    """Enqueues the crossed trials of a study once its baselines have finished (call it before each ask).

    Args:
        study: the run's study.
        space: its resolved space.
        enabled: ``--warm-start crossed``.
        claims: a shared study's claims (one process enqueues), or ``None``.
    """

    def __init__(self, study: optuna.Study, space: ResolvedSpace, *, enabled: bool,
                 claims: Claims | None = None) -> None:
        self.study, self.space, self.claims = study, space, claims
        self.pending = enabled and ATTR_CROSSED not in study.user_attrs

    @classmethod
    def of(cls, prep: Prepared, claims: Claims | None) -> Crossing:
        """The crossing of a prepared run (enabled by ``--warm-start crossed``)."""
        return cls(prep.study, prep.space, enabled=prep.settings.warm_start == "crossed", claims=claims)

    def __call__(self) -> int | None:
        """The number of trials enqueued now, or ``None`` (not yet, already done, or another process's job)."""
        if not self.pending:
            return None
        from optuna.trial import TrialState

        baselines = [t for t in self.study.get_trials(deepcopy=False) if ATTR_BASELINE in t.user_attrs]
        if any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in baselines):
            return None
        self.pending = False
        if self.claims is not None and not self.claims.first("crossed"):
            return None
        params, crossed = crossed_params(self.space, baselines)
        for p in params:
            self.study.enqueue_trial(p, user_attrs={"warm_start": "cross"})
        self.study.set_user_attr(ATTR_CROSSED, {"enqueued": len(params), "crossed": crossed})
        return len(params)
