"""What a worker process needs to evaluate trials of a run, shared by the process-pool and Ray executors.

A :class:`WorkerSetup` is plain and picklable; :func:`worker_state` builds the evaluator (model + the train
reference, read from the on-disk cache the driver filled) and the resolved space once per process and
configuration, and keeps them for every later trial.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..objective import Objectives
from ..screening import Screening

if TYPE_CHECKING:
    from ...evaluate import EvalConfig, Evaluator
    from ...schedule import BlockProfile
    from ..settings import RunSettings
    from ..space import ResolvedSpace
    from .base import Prepared

__all__ = ["WORKER", "WorkerSetup", "prebuilt_key", "worker_eval_config", "worker_setup", "worker_state"]

WORKER: dict[str, Any] = {}
"""Per-process cache: ``(evaluator, resolved space)`` per configuration key, ``loads`` (evaluators built), and an
evaluator built ahead of the first trial (:func:`prebuilt_key`)."""


def prebuilt_key(config: EvalConfig) -> str:
    """The :data:`WORKER` key of an evaluator built before the process's first trial (while the driver prepared the
    run, or for reference shards); :func:`worker_state` takes it over."""
    return f"evaluator:{config.to_dict()}"


def worker_eval_config(settings: RunSettings, cache_dir: str | None) -> EvalConfig:
    """The evaluator configuration of a run's workers: the run's, with the reference cache as an absolute path
    (workers may run elsewhere)."""
    given = settings.eval_config(cache_dir)
    return settings.eval_config(cache_dir=str(Path(given.cache_dir).expanduser().resolve()))


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker needs to evaluate trials (plain, picklable values)."""

    key: str
    eval_config: EvalConfig
    space_text: str
    space_source: str
    profile: BlockProfile | None
    profile_id: str | None
    objectives: Objectives
    storage: str
    study_name: str
    threads: int
    screening: Screening | None = None


def worker_setup(prep: Prepared, *, threads: int) -> WorkerSetup:
    """The setup of ``prep``'s workers, each running torch with ``threads`` CPU threads."""
    settings = prep.settings
    eval_config = worker_eval_config(settings, prep.ev.config.cache_dir)
    space = prep.space.space
    return WorkerSetup(
        key=json.dumps({"eval": eval_config.to_dict(), "space": space.digest}, sort_keys=True, default=str),
        eval_config=eval_config, space_text=space.text, space_source=space.source, profile=prep.profile,
        profile_id=prep.space.ctx.profile_id, objectives=prep.objectives, storage=prep.handle.storage_spec,
        study_name=settings.name, threads=threads, screening=settings.screening,
    )


def quiet_worker() -> None:
    """A worker repeats nothing the driver says once per run: the metric fallback (the driver notes it) and
    Optuna's per-trial INFO lines."""
    logging.getLogger("cachesearch.evaluate._quality").setLevel(logging.ERROR)
    logging.getLogger("optuna").setLevel(logging.WARNING)


def worker_state(setup: WorkerSetup) -> tuple[Evaluator, ResolvedSpace]:
    """The evaluator and resolved space of this process (built once per configuration)."""
    from ...evaluate import Evaluator
    from ..space import SpaceContext, parse_space

    cached = WORKER.get(setup.key)
    if cached is None:
        quiet_worker()
        ev = WORKER.pop(prebuilt_key(setup.eval_config), None)
        if ev is None:
            ev = Evaluator(setup.eval_config)
        WORKER["loads"] = WORKER.get("loads", 0) + 1
        ev.reference("train")
        space = parse_space(yaml.safe_load(setup.space_text), source=setup.space_source, text=setup.space_text)
        resolved = space.resolve(SpaceContext.of(ev, setup.profile, setup.profile_id))
        cached = WORKER[setup.key] = (ev, resolved)
    return cached
