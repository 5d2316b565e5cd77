"""What one trial produced: the :class:`Outcome` an executor records, and the user attributes it carries."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from .._util import json_safe

if TYPE_CHECKING:
    from ..evaluate import EvalResult

__all__ = ["Outcome", "TrialAttrs", "result_attr"]


class TrialAttrs(TypedDict, total=False):
    """The user attributes cachesearch records on a trial (all JSON; every key optional).

    Set by :func:`~.objective.evaluate_candidate`: ``policy`` (``Policy.to_dict()``), ``git``, ``device``, ``mask_key``,
    ``schedule`` (:func:`~.masks.schedule_attr`), ``result`` (the train ``EvalResult`` as a dict), ``speedup``,
    ``remeasured``, ``duplicate_of`` (the trial whose evaluation this one reuses; the duplicate is told PRUNED),
    ``screened`` (multi-fidelity: the image count, partial loss, bound and the front point that dominates it;
    the trial is told PRUNED), ``reason`` and ``traceback`` of a failure; by the executors: ``params_error``, ``worker``
    (``{"host", "pid"}``), ``already_recorded``,
    the runner (``host``, ``pid``, ``session``, ``run_dir``); by the study: ``baseline``, ``baseline_kind``,
    ``requeued``, ``requeued_from``.
    """

    policy: dict[str, Any]
    git: str | None
    device: str
    mask_key: str
    schedule: dict[str, Any]
    result: dict[str, Any]
    speedup: float
    remeasured: bool
    duplicate_of: int
    screened: dict[str, Any]
    reason: str
    traceback: str
    params_error: str
    worker: dict[str, Any]
    already_recorded: bool


@dataclass
class Outcome:
    """What evaluating one candidate produced.

    ``values`` is set for a completed trial and None for a failed one (then ``reason`` says why);
    ``user_attrs`` and ``constraints`` are recorded on the trial before it is told.
    """

    values: tuple[float, float] | None
    reason: str | None = None
    constraints: dict[str, float] = field(default_factory=dict)
    user_attrs: TrialAttrs = field(default_factory=lambda: TrialAttrs())

    @property
    def ok(self) -> bool:
        """True for a completed trial."""
        return self.values is not None

    def to_json(self) -> str:
        """Serialise (Ray workers send outcomes to the driver as JSON)."""
        return json.dumps({"values": self.values, "reason": self.reason, "constraints": self.constraints,
                           "user_attrs": self.user_attrs})

    @classmethod
    def from_json(cls, text: str) -> Outcome:
        """Inverse of :meth:`to_json`."""
        d = json.loads(text)
        values = tuple(d["values"]) if d["values"] is not None else None
        return cls(values=values, reason=d["reason"], constraints=d["constraints"],
                   user_attrs=TrialAttrs(**d["user_attrs"]))


def result_attr(res: EvalResult) -> dict[str, Any]:
    """An :class:`~cachesearch.evaluate.EvalResult` as plain JSON (NaN and inf → None)."""
    return json_safe(dict(res.to_dict()))
