"""Search: spaces as data, the Optuna study, executors (local, Ray Tune), Pareto export and the report.

``cachesearch run`` drives :func:`run_search`; ``cachesearch export``/``report`` use :func:`export_run`.
Importing this package loads neither optuna nor ray: they are imported when a study is opened (ray only by
the Ray executor).

Layout: :mod:`.settings` (the run's options, typed once), :mod:`.space` (space files, one module per policy family
under :mod:`.space.families`), :mod:`.objective` (one candidate → objective values; its :mod:`.outcome`,
:mod:`.masks` (identity, known evaluations), :mod:`.provenance` and :mod:`.screening`), :mod:`.study` (creation,
resume checks; :mod:`.storage`, :mod:`.trials`: budget, orphans, the front), :mod:`.executors` (``base`` +
``local`` + ``ray``), :mod:`.export` (typed index entries), :mod:`.report`, and :mod:`.run`, which ties them
together and is imported by none of them.
"""

from typing import TYPE_CHECKING

from .._util import lazy_exports

if TYPE_CHECKING:
    from .executors.base import LoopResult, Prepared, Progress
    from .export import BaselineRow, ExportEntry, ExportResult, export_front
    from .masks import mask_key
    from .objective import Objectives, evaluate_candidate
    from .outcome import Outcome, TrialAttrs
    from .report import Comparison, compare_with_baselines, headline, write_report
    from .resume import find_run, resolve_settings
    from .run import RunSummary, export_run, open_run, prepare, run_search
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
    from .trials import pareto_trials

# Every name loads its module on first use: `cachesearch.search.settings` (the CLI's options) does not pull in
# the evaluator, torch or optuna through this package.
_LAZY = {
    "LoopResult": ".executors.base",
    "Prepared": ".executors.base",
    "Progress": ".executors.base",
    "BaselineRow": ".export",
    "ExportEntry": ".export",
    "ExportResult": ".export",
    "export_front": ".export",
    "Objectives": ".objective",
    "Outcome": ".outcome",
    "TrialAttrs": ".outcome",
    "evaluate_candidate": ".objective",
    "mask_key": ".masks",
    "Comparison": ".report",
    "compare_with_baselines": ".report",
    "headline": ".report",
    "write_report": ".report",
    "RunSummary": ".run",
    "export_run": ".run",
    "find_run": ".resume",
    "open_run": ".run",
    "prepare": ".run",
    "resolve_settings": ".resume",
    "run_search": ".run",
    "RunSettings": ".settings",
    "SearchError": ".settings",
    "SPACE_FORMAT": ".space",
    "ResolvedSpace": ".space",
    "SearchSpace": ".space",
    "SpaceContext": ".space",
    "SpaceError": ".space",
    "builtin_space_names": ".space",
    "default_space": ".space",
    "find_space": ".space",
    "load_space": ".space",
    "parse_space": ".space",
    "pareto_trials": ".trials",
}

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


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
