"""The cache applier: install/remove a schedule's hooks on a pipeline's denoiser (torch + diffusers only)."""

from ..adapters import denoiser_of
from ..schedule._apply import register_applier
from ._applier import AppliedSchedule, apply_schedule
from ._experts import expert_starts, experts_of, fingerprint_module, fingerprint_of
from ._libraries import check_installed_runtime
from ._runtime_applied import AppliedRuntime, runtime_problem
from ._runtime_compile import resolve_runtime
from ._steps import call_starts, count_calls, steps_of_calls

register_applier(apply_schedule)  # Schedule.apply / .applied delegate here; the schedule layer never imports us

__all__ = [
    "AppliedRuntime",
    "AppliedSchedule",
    "apply_schedule",
    "call_starts",
    "check_installed_runtime",
    "count_calls",
    "denoiser_of",
    "expert_starts",
    "experts_of",
    "fingerprint_module",
    "fingerprint_of",
    "resolve_runtime",
    "runtime_problem",
    "steps_of_calls",
]
