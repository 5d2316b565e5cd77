"""The Ray executor's driver-side state and Tune's failures: the error a Tune trial left, whether its worker was
lost, and the callback that records each retried failure on its Optuna trial (see :mod:`.ray`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.tune import Callback

from .ray_trainable import _ID_KEY, _NUMBER_KEY

__all__: list[str] = []

# Private names shared by the Ray executor's modules (.ray re-exports them: pickled experiments name them there).
_MAX_FAILURES = 2
"""``FailureConfig.max_failures``: a trial whose worker (or node) died is retried this many times."""

# Driver-side state the (pickled) searcher and callback look up at call time, so a searcher restored by
# Tuner.restore reports to this process's progress bar and tags trials with this process's runner.
_DRIVER: dict[str, Any] = {"progress": None, "runner": {}, "done": 0}


def _error_text(trial: Any) -> str:
    """The last error of a Tune trial (its ``error.txt`` holds one entry per failure)."""
    path = getattr(trial, "error_file", None)
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace") if path else ""
    except OSError:
        return ""
    return "\n".join(text.rsplit("Failure # ", 1)[-1].splitlines()[1:]) if "Failure # " in text else text


def _error_summary(text: str) -> str:
    """One line: Ray's cause lines (e.g. "The actor died because its node has died. Node Id: …; the actor's
    node was terminated unexpectedly: health check failed …"), else the error's last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    cause = [line for line in lines if "because" in line or "terminated" in line or "node" in line.lower()
             and ":" in line and not line.startswith(("File ", "class_name", "actor_id"))]
    return " ".join("; ".join(cause or lines[-1:]).split())[:400] or "unknown error"


def _worker_lost(text: str) -> bool:
    """Whether the error is the worker process (or its node) dying, not the trial raising."""
    return any(mark in text for mark in ("The actor died", "ActorDiedError", "RayActorError",
                                         "ActorUnavailableError", "is unavailable: "))


class _TrialEvents(Callback):
    """Tune callback (driver side): records each retried failure (``FailureConfig``) on its Optuna trial, so a
    lost worker or node is visible in the study, and keeps the Tune trials for the searcher's failure reason.

    Stateless (it reads ``_DRIVER``): it is pickled with the experiment and works after ``Tuner.restore``."""

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        _DRIVER.setdefault("tune_trials", {})[trial.trial_id] = trial

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        study, trial_id = _DRIVER.get("study"), trial.config.get(_ID_KEY)
        if study is None or not isinstance(trial_id, int):
            return
        error = _error_summary(_error_text(trial))
        retries = list(study._storage.get_trial(trial_id).user_attrs.get("ray_retries", []))
        retries.append({"failure": trial.run_metadata.num_failures, "error": error})
        study._storage.set_trial_user_attr(trial_id, "ray_retries", retries)
        progress = _DRIVER.get("progress")
        if progress is not None:
            progress.note(f"trial {trial.config.get(_NUMBER_KEY)}: its worker failed ({error}); retrying "
                          f"(failure {len(retries)} of {_MAX_FAILURES + 1} allowed)")
