"""The Ray executor's worker side: the Tune trainable that replays one trial's parameters and evaluates its
candidate (see :mod:`.ray`)."""

from __future__ import annotations

import os
from typing import Any

import optuna
from optuna.trial import FixedTrial

from ..attrs import baseline_attrs
from ..masks import KnownMasks
from ..objective import evaluate_candidate
from ..outcome import Outcome
from ..storage import open_storage
from .worker import WORKER, WorkerSetup, worker_state

__all__: list[str] = []

# Private names shared by the Ray executor's modules (.ray re-exports them: pickled experiments name them there).
_RESULT_KEY = "cachesearch"
_NUMBER_KEY = "__cachesearch_trial_number"
_ID_KEY = "__cachesearch_trial_id"
# Worker-side caches (evaluator + resolved space per configuration, the study handle per storage): WORKER.
_WORKER = WORKER


def _worker_study(setup: WorkerSetup) -> optuna.Study:
    key = f"study:{setup.storage}:{setup.study_name}"
    if key not in _WORKER:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        _WORKER[key] = optuna.load_study(study_name=setup.study_name, storage=open_storage(setup.storage))
    return _WORKER[key]


def _trainable(config: dict[str, Any], setup: WorkerSetup) -> None:
    """Ray Tune function trainable: evaluate one trial's candidate and report its outcome."""
    import torch
    from ray import tune

    torch.set_num_threads(max(1, setup.threads))
    names = setup.objectives.names
    number = config.get(_NUMBER_KEY)
    params = {k: v for k, v in config.items() if not k.startswith("__cachesearch")}
    study = _worker_study(setup)
    trials = study.get_trials(deepcopy=False)
    frozen = trials[number] if isinstance(number, int) and number < len(trials) else None
    if frozen is not None and frozen.state.is_finished():
        # Tuner.restore re-ran a trial that the crashed driver had already recorded: report, do not evaluate.
        outcome = Outcome(values=None, reason="already recorded", user_attrs={"already_recorded": True})
    else:
        ev, space = worker_state(setup)
        known = KnownMasks()
        for t in trials:
            known.add_trial(t)
        try:
            policy = space.suggest(FixedTrial(params, number=number or 0))
        except Exception as e:  # noqa: BLE001 - a parameter combination the policy refuses
            outcome = Outcome(values=None, reason=f"policy: {type(e).__name__}: {e}")
        else:
            outcome = evaluate_candidate(ev, policy, setup.objectives, known=known, number=number,
                                         study=setup.study_name,
                                         screening=None if frozen is not None and baseline_attrs(frozen.user_attrs)
                                         else setup.screening)
        # ``loads``: evaluators (model + references) this worker process built so far
        # ``node``: the Ray node id (hosts may share a name, e.g. containers or several raylets on one machine)
        outcome.user_attrs["worker"] = {"host": os.uname().nodename, "pid": os.getpid(),
                                        "loads": _WORKER.get("loads", 0), "node": _node_id()}
    values = outcome.values or (None, None)
    tune.report({names[0]: values[0], names[1]: values[1], _RESULT_KEY: outcome.to_json()})


def _node_id() -> str | None:
    import ray

    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - not in a Ray worker (tests call the trainable directly)
        return None
