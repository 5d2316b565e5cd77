"""cachesearch: find and apply Pareto-optimal feature-caching schedules for diffusion models.

Production code needs only this module's runtime path (torch + diffusers + pyyaml)::

    import cachesearch as cs
    sched = cs.load_schedule("schedule.yaml")
    with sched.applied(pipe):
        image = pipe(prompt, **sched.pipeline_kwargs()).images[0]
"""

from ._compile import compile_schedule
from ._version import __version__
from .runtime import AppliedSchedule, apply_schedule  # importing the runtime registers Schedule.apply's applier
from .schedule import (
    BlockCachingAuto,
    BlockMask,
    BlockProfile,
    DeepCache,
    Front,
    Full,
    Joint,
    MiddleCache,
    MiddleCacheAuto,
    PerBranch,
    PeriodicMask,
    ReuseMode,
    ScaleShift,
    Schedule,
    ScheduleError,
    StepSet,
    TaylorSeer,
    WithScaleShift,
    load_front,
    load_schedule,
)

__all__ = [
    "AppliedSchedule",
    "BlockCachingAuto",
    "BlockMask",
    "BlockProfile",
    "DeepCache",
    "Front",
    "Full",
    "Joint",
    "MiddleCache",
    "MiddleCacheAuto",
    "PerBranch",
    "PeriodicMask",
    "ReuseMode",
    "ScaleShift",
    "Schedule",
    "ScheduleError",
    "StepSet",
    "TaylorSeer",
    "WithScaleShift",
    "__version__",
    "apply_schedule",
    "compile_schedule",
    "fit_scale_shift",
    "load_front",
    "load_schedule",
]


def __getattr__(name: str) -> object:
    # Heavy, off the runtime path: loaded on first use only.
    if name == "fit_scale_shift":
        from .evaluate._scale_shift import fit_scale_shift

        globals()[name] = fit_scale_shift
        return fit_scale_shift
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
