"""What every executor needs and nothing else: the prepared run, the progress protocol, the loop's result and
how an outcome is recorded on its trial. ``run.py`` prepares a run and picks an executor; executors depend on
this module only (as Optuna's journal storage depends on its ``_base.py``, never on a backend)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..._util import json_safe
from ...schedule import BlockProfile
from ..objective import Objectives
from ..outcome import Outcome
from ..settings import RunSettings
from ..space import ResolvedSpace
from ..study import StudyHandle

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

    import optuna

    from ...evaluate import Evaluator

__all__ = [
    "FINISHED_MARK",
    "Executor",
    "LoopResult",
    "Prepared",
    "Progress",
    "RAY_DIR",
    "ray_experiment_unfinished",
    "record_outcome",
]

RAY_DIR = "ray"
"""The folder of a run's Ray Tune experiments (``ray/current`` names the latest one)."""
FINISHED_MARK = ".cachesearch-finished"
"""Written into a Ray Tune experiment folder once its trial loop ended normally."""


class Progress:
    """Receives progress events; the CLI draws them with rich. The base class ignores everything."""

    def stage(self, text: str, done: int | None = None, total: int | None = None) -> None:
        """A preparation or finishing step (``done``/``total`` when it has parts)."""

    def start(self, *, total: int | None, done: int, timeout: float | None) -> None:
        """The trial loop starts with ``done`` finished trials of ``total`` (None: no trial budget)."""

    def trial(self, *, number: int, done: int, front: int, outcome: Outcome) -> None:
        """A trial finished."""

    def note(self, text: str) -> None:
        """Something the user should know (orphans recovered, baselines skipped, stop requested)."""

    def end(self) -> None:
        """The trial loop ended."""


@dataclass
class Prepared:
    """Everything a trial loop needs. ``evaluator`` is None only while the Ray executor has released it."""

    settings: RunSettings
    handle: StudyHandle
    evaluator: Evaluator | None
    space: ResolvedSpace
    objectives: Objectives
    session: str
    run_dir: Path
    profile: BlockProfile | None = None
    notes: list[str] = field(default_factory=list)
    pool: ProcessPoolExecutor | None = None
    """The run's worker processes when ``cachesearch run`` started them before it
    prepared (local executor, ``--workers`` > 1); the search and the held-out validation run on them."""

    @property
    def study(self) -> optuna.Study:
        """The Optuna study."""
        return self.handle.study

    @property
    def ev(self) -> Evaluator:
        """The evaluator (raises if an executor released it)."""
        if self.evaluator is None:
            raise RuntimeError("the run's evaluator was released (the Ray executor is running)")
        return self.evaluator


@dataclass
class LoopResult:
    """How a trial loop ended: ``stopped`` is ``budget``, ``timeout``, ``interrupted`` or ``done``;
    ``evaluated``: trials of this session that ran an evaluation (duplicates excluded)."""

    evaluated: int
    stopped: str


Executor = Callable[[Prepared, Progress], LoopResult]
"""An executor runs the trial loop of a prepared run."""


def record_outcome(study: optuna.Study, trial: optuna.Trial, outcome: Outcome) -> None:
    """Store an outcome on its (RUNNING) trial and tell the study: COMPLETE with values, PRUNED for a duplicate,
    or FAIL with reason.

    A duplicate (``duplicate_of``: its compiled mask was evaluated by that trial) is told PRUNED without values,
    so the study holds each mask's values once: ``best_trials`` and the samplers see distinct candidates only
    (NSGA-II builds its generations from COMPLETE trials, so a duplicate does not take a place in the
    population and the generation keeps proposing until it has enough distinct children).
    A candidate screened out by multi-fidelity evaluation (``screened``) is PRUNED likewise: its partial loss
    is recorded in its attributes, not as objective values.
    Never leaves the trial RUNNING: if Optuna refuses the values, the trial fails with that reason.
    Attributes are made JSON-safe first (NaN → None).
    """
    from optuna.trial import TrialState

    attrs = json_safe(dict(outcome.user_attrs))
    if not outcome.ok:
        attrs["reason"] = outcome.reason or "failed"
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    if outcome.ok and ("duplicate_of" in attrs or "screened" in attrs):
        study.tell(trial, state=TrialState.PRUNED)
        return
    if outcome.ok:
        for key, value in outcome.constraints.items():
            trial.set_constraint(key, float(value))
        try:
            study.tell(trial, list(outcome.values))  # type: ignore[arg-type]
            return
        except Exception as e:  # noqa: BLE001 - e.g. values Optuna rejects; the trial must not stay RUNNING
            trial.set_user_attr("reason", f"tell failed: {type(e).__name__}: {e}")
    study.tell(trial, state=TrialState.FAIL)


def ray_experiment_unfinished(run_dir: Path) -> bool:
    """Whether the run has a Ray Tune experiment whose driver stopped before it finished (``Tuner.restore``
    resumes its trials, so they are not orphans)."""
    current = run_dir / RAY_DIR / "current"
    if not current.is_file():
        return False
    exp = run_dir / RAY_DIR / current.read_text(encoding="utf-8").strip()
    return exp.is_dir() and not (exp / FINISHED_MARK).exists() and any(exp.glob("experiment_state-*.json"))
