"""Search: spaces as data, the Optuna study, executors (local, Ray Tune), Pareto export and the report.

``cachesearch run`` drives :func:`run_search`; ``cachesearch export``/``report`` use :func:`export_run`.
Importing this package loads neither optuna nor ray: they are imported when a study is opened (ray only by
the Ray executor).

Layout: :mod:`.settings` (the run's options, typed once), :mod:`.space` (space files, one module per policy
family under :mod:`.space.families`), :mod:`.objective` (one candidate → objective values), :mod:`.study`
(storage, resume checks, orphans), :mod:`.executors` (``base`` + ``local`` + ``ray``), :mod:`.export` (typed
index entries), :mod:`.report`, and :mod:`.run`, which ties them together and is imported by none of them.
"""

from .executors.base import LoopResult, Prepared, Progress
from .export import BaselineRow, ExportEntry, ExportResult, export_front
from .objective import Objectives, Outcome, TrialAttrs, evaluate_candidate, mask_key
from .report import Comparison, compare_with_baselines, headline, write_report
from .run import RunSummary, export_run, find_run, open_run, prepare, resolve_settings, run_search
from .settings import RunSettings, SearchError
from .space import (
    SPACE_FORMAT,
    ResolvedSpace,
    SearchSpace,
    SpaceContext,
    SpaceError,
    builtin_space_names,
    default_space,
    find_space,
    load_space,
    parse_space,
)
from .study import pareto_trials

__all__ = [
    "SPACE_FORMAT",
    "BaselineRow",
    "Comparison",
    "ExportEntry",
    "ExportResult",
    "LoopResult",
    "Objectives",
    "Outcome",
    "Prepared",
    "Progress",
    "ResolvedSpace",
    "RunSettings",
    "RunSummary",
    "SearchError",
    "SearchSpace",
    "SpaceContext",
    "SpaceError",
    "TrialAttrs",
    "builtin_space_names",
    "compare_with_baselines",
    "default_space",
    "evaluate_candidate",
    "export_front",
    "export_run",
    "find_run",
    "find_space",
    "headline",
    "load_space",
    "mask_key",
    "open_run",
    "pareto_trials",
    "parse_space",
    "prepare",
    "resolve_settings",
    "run_search",
    "write_report",
]
