"""The Optuna study of a run: its sampler, creation with checks, resume checks, and the run settings file.

A run is a directory ``<out>/<name>/`` (``artifacts/runs/<name>`` by default) holding the journal file
``study.journal`` (unless ``--storage`` names another Optuna storage), the run settings (``run.yaml``), the
search space it uses (``space.yaml``), the block-change profile, exported schedules and the report. Where the
study is stored is :mod:`.storage`; reading its trials (budget, orphans, the front) is :mod:`.trials`.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .._util import atomic_write, utc_now
from .._version import __version__
from .attrs import (  # noqa: F401 - re-exported
    ATTR_BASELINE,
    ATTR_BASELINE_KIND,
    ATTR_BASELINES,
    ATTR_CONFIG,
    ATTR_MAGCACHE,
    ATTR_PROFILE,
    ATTR_SPACE,
    baseline_attrs,
)
from .redact import hide_password
from .settings import SAMPLERS, RunSettings, SearchError
from .storage import open_storage, relative_storage, run_lock, storage_spec
from .trials import (
    FULL_COMPUTE,
    budget_counts,
    finished_count,
    front_size,
    is_full_compute,
    pareto_trials,
    recover_orphans,
)

if TYPE_CHECKING:
    import optuna

# The storage and trial helpers live in .storage and .trials; they stay importable from here, where the executors,
# commands, tests and benchmarks have always imported them.
__all__ = [
    "FULL_COMPUTE",
    "STUDY_FORMAT",
    "StudyHandle",
    "budget_counts",
    "finished_count",
    "front_size",
    "hide_password",
    "is_full_compute",
    "load_settings",
    "make_sampler",
    "open_storage",
    "open_study",
    "pareto_trials",
    "recover_orphans",
    "relative_storage",
    "resume_refused",
    "run_lock",
    "save_settings",
    "settings_conflicts",
    "storage_spec",
]

STUDY_FORMAT = "cachesearch/study@1"


# -- samplers ----------------------------------------------------------------------------------------------
def make_sampler(kind: str, *, seed: int | None, population: int, offset: int = 0) -> Any:
    """TPE (default), NSGA-II, GP or random. ``offset`` (finished trials so far) varies the seed on resume so a
    resumed run does not propose the same candidates again; the run stays reproducible.

    TPE models the parameters jointly (``multivariate``) within each group of parameters that occur together
    (``group``: the spaces are conditional, a trial has only its family's parameters) and, with several workers,
    treats running trials as bad (``constant_liar``) so that concurrent asks differ. The GP sampler models the
    parameters every trial has (Optuna's intersection search space); the others are sampled at random.
    """
    import optuna

    if seed is not None and offset:
        seed = int.from_bytes(hashlib.sha256(f"{seed}:{offset}".encode()).digest()[:4], "little")
    startup = min(population, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if kind == "nsga2":
            return optuna.samplers.NSGAIISampler(population_size=population, seed=seed)
        if kind == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                              n_startup_trials=startup)
        if kind == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup, warn_independent_sampling=False)
        if kind == "random":
            return optuna.samplers.RandomSampler(seed=seed)
    raise SearchError(f"--sampler: expected one of {list(SAMPLERS)}, got {kind!r}")


# -- the study ---------------------------------------------------------------------------------------------
@dataclass
class StudyHandle:
    """An opened study and what cachesearch stored with it."""

    study: optuna.Study
    storage_spec: str
    settings: RunSettings
    created: bool
    config: dict[str, Any] = field(default_factory=dict)


def load_settings(run_dir: Path) -> RunSettings | None:
    """The settings stored in ``run_dir/run.yaml`` by an earlier run, if any."""
    path = run_dir / "run.yaml"
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return RunSettings.from_dict(data["settings"])
    except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
        raise SearchError(f"{path}: cannot read the run settings ({e}); fix or delete the file") from e


def save_settings(settings: RunSettings, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``run.yaml`` (human-readable; the study itself stores the same identity)."""
    doc = {"format": "cachesearch/run@1", "cachesearch": __version__, "updated": utc_now(),
           "settings": settings.to_dict(), **(extra or {})}
    path = settings.run_dir / "run.yaml"
    atomic_write(path, yaml.safe_dump(doc, sort_keys=False))
    return path


def open_study(settings: RunSettings, *, fingerprint: str, metric: str, space_digest: str,
               weights: str | None = None, sampler: Any = None, create: bool = True) -> StudyHandle:
    """Create the study, or load it and refuse any mismatch of objectives, space, model or evaluation.

    ``optuna.create_study(load_if_exists=True)`` silently ignores directions; this checks everything cachesearch
    stored at creation (directions, objective names, constraints, space digest, model fingerprint, sampler
    steps, prompts) and names each difference.
    """
    import optuna

    spec = storage_spec(settings)
    storage = open_storage(spec)
    names = {s.study_name for s in optuna.study.get_all_study_summaries(storage, include_best_trial=False)}
    objectives = settings.objectives
    config = {
        "format": STUDY_FORMAT,
        "cachesearch": __version__,
        "created": utc_now(),
        "fingerprint": fingerprint,
        "weights": weights,
        "metric": metric,
        "objectives": objectives.to_dict(),
        "space_digest": space_digest,
        "identity": settings.identity(),
    }
    if settings.name not in names and not create:
        raise SearchError(f"no study {settings.name!r} in {spec}; run `cachesearch run --name {settings.name}` first")
    if settings.name not in names:
        try:
            study = optuna.create_study(
                study_name=settings.name, storage=storage, sampler=sampler,
                directions=["minimize", "minimize"], load_if_exists=False,
            )
        except optuna.exceptions.DuplicatedStudyError:  # created concurrently: load and check below
            pass
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(list(objectives.names))
            study.set_user_attr(ATTR_CONFIG, config)
            return StudyHandle(study=study, storage_spec=spec, settings=settings, created=True, config=config)
    study = optuna.load_study(study_name=settings.name, storage=storage, sampler=sampler)
    stored = study.user_attrs.get(ATTR_CONFIG)
    for _ in range(50):  # created by a process starting at the same time that has not stored its config yet
        if stored is not None or study.trials:
            break
        time.sleep(0.2)
        stored = study.user_attrs.get(ATTR_CONFIG)
    if not isinstance(stored, Mapping) or stored.get("format") != STUDY_FORMAT:
        raise SearchError(
            f"study {settings.name!r} in {spec} was not created by cachesearch (no {ATTR_CONFIG!r} attribute); "
            f"pick another --name"
        )
    problems = check_compatible(stored, config, study)
    if problems:
        raise resume_refused(settings.name, problems)
    return StudyHandle(study=study, storage_spec=spec, settings=settings, created=False, config=dict(stored))


def resume_refused(name: str, problems: Sequence[str]) -> SearchError:
    """The error of a resume whose settings differ from the study's (one line per difference)."""
    return SearchError(
        f"cannot resume study {name!r}: it was created with different settings:\n  - " + "\n  - ".join(problems)
        + "\nResume with the original options (omit them: they are read from the study) or start a new run "
          "with another --name."
    )


def settings_conflicts(stored: RunSettings, wanted: RunSettings) -> list[str]:
    """Differences in :attr:`RunSettings.IDENTITY` between a run's stored settings and those asked for, worded
    as :func:`check_compatible` words them (checked before anything is loaded)."""
    s_id, w_id = stored.identity(), wanted.identity()
    problems = []
    for key in ("max_quality", "min_speedup"):
        if s_id[key] != w_id[key]:
            problems.append(f"objective {key}: study has {s_id[key]!r}, this run has {w_id[key]!r}")
    if s_id["objective"] != w_id["objective"]:
        problems.append(f"objective kind: study has {s_id['objective']!r}, this run has {w_id['objective']!r}")
    if s_id["objective_stat"] != w_id["objective_stat"]:
        problems.append(f"objective stat: study has {s_id['objective_stat']!r}, this run has "
                        f"{w_id['objective_stat']!r}")
    for key in sorted(set(s_id) - {"max_quality", "min_speedup", "objective", "objective_stat"}):
        if s_id[key] != w_id[key]:
            problems.append(f"{key}: study has {s_id[key]!r}, this run has {w_id[key]!r}")
    return problems


def check_compatible(stored: Mapping[str, Any], wanted: Mapping[str, Any], study: Any) -> list[str]:
    """Differences between a stored study config and the one a run wants (empty when compatible)."""
    import optuna

    problems: list[str] = []
    want_dirs = [optuna.study.StudyDirection.MINIMIZE] * 2
    if list(study.directions) != want_dirs:
        problems.append(f"directions: study has {[d.name.lower() for d in study.directions]}, expected "
                        f"['minimize', 'minimize']")
    names = wanted["objectives"]["names"]
    if study.metric_names is not None and list(study.metric_names) != list(names):
        problems.append(f"objectives: study has {study.metric_names}, this run uses {names}")
    for key in ("fingerprint", "weights", "metric", "space_digest"):
        if stored.get(key) != wanted.get(key):
            what = {"fingerprint": "model architecture fingerprint", "metric": "quality metric",
                    "weights": "model weights (hash)", "space_digest": "search space (file text)"}[key]
            problems.append(f"{what}: study has {stored.get(key)!r}, this run has {wanted.get(key)!r}")
    s_obj, w_obj = {"stat": "mean", **stored.get("objectives", {})}, wanted["objectives"]  # older studies: mean
    for key in ("kind", "max_quality", "min_speedup", "stat"):
        if s_obj.get(key) != w_obj.get(key):
            problems.append(f"objective {key}: study has {s_obj.get(key)!r}, this run has {w_obj.get(key)!r}")
    s_id, w_id = stored.get("identity", {}), wanted["identity"]
    for key in sorted(set(s_id) | set(w_id)):
        if key in ("max_quality", "min_speedup", "objective", "objective_stat"):
            continue
        if key not in s_id:  # a setting checked since a later version (device): studies before it cannot say
            continue
        if s_id.get(key) != w_id.get(key):
            problems.append(f"{key}: study has {s_id.get(key)!r}, this run has {w_id.get(key)!r}")
    return problems
