"""cachesearch: find and apply Pareto-optimal feature-caching schedules for diffusion models.

Production code needs only this module's runtime path (torch + diffusers + pyyaml)::

    import cachesearch as cs
    sched = cs.load_schedule("schedule.yaml")
    with sched.applied(pipe):
        image = pipe(prompt, **sched.pipeline_kwargs()).images[0]
"""

from typing import TYPE_CHECKING

from ._util import lazy_exports
from ._version import __version__
from .schedule import (
    BlockCachingAuto,
    BlockMask,
    BlockProfile,
    CacheDiT,
    DeepCache,
    DiffusersCache,
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
    "CacheDiT",
    "DeepCache",
    "DiffusersCache",
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


if TYPE_CHECKING:
    from ._compile import compile_schedule
    from .evaluate._scale_shift import fit_scale_shift
    from .runtime import AppliedSchedule, apply_schedule

# Names that need torch load on first use, so `import cachesearch` (and the CLI's --help) stays light; the
# runtime registers Schedule.apply's applier when it is imported (Schedule.apply also loads it on first use).
_LAZY = {"AppliedSchedule": ".runtime", "apply_schedule": ".runtime", "compile_schedule": "._compile",
         "fit_scale_shift": ".evaluate._scale_shift"}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
