"""Search: spaces as data, the Optuna study, executors (local, Ray Tune), Pareto export and the report.

``cachesearch run`` drives :func:`run_search`; ``cachesearch export``/``report`` use :func:`export_run`.
Importing this package loads neither optuna nor ray: they are imported when a study is opened (ray only by
the Ray executor).
"""

from ._export import ExportResult, export_front
from ._objective import Objectives, Outcome, evaluate_candidate, mask_key
from ._report import Comparison, compare_with_baselines, write_report
from ._run import Prepared, Progress, RunSummary, export_run, open_run, prepare, resolve_settings, run_search
from ._spaces import (
    SPACE_FORMAT,
    ResolvedSpace,
    SearchSpace,
    SpaceContext,
    SpaceError,
    builtin_space_names,
    find_space,
    load_space,
    parse_space,
)
from ._study import RunSettings, SearchError, pareto_trials

__all__ = [
    "SPACE_FORMAT",
    "Comparison",
    "ExportResult",
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
    "builtin_space_names",
    "compare_with_baselines",
    "evaluate_candidate",
    "export_front",
    "export_run",
    "find_space",
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
