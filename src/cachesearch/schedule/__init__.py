"""The schedule IR, policy families, the YAML format and the architecture fingerprint.

Pure data: this layer imports only pyyaml, numpy and (for scale-shift sidecars) ``safetensors.numpy``.
"""

from ._blockspace import BlockInfo, BlockKind, BlockSpace
from ._errors import ScheduleError
from ._fingerprint import architecture_fingerprint, fingerprint_mismatch
from ._front import Front, FrontEntry, load_front
from ._ir import (
    FORMAT,
    FORMATS,
    LOSS_STATS,
    BlockEntry,
    LatencyMetrics,
    LossStats,
    Metrics,
    ModelInfo,
    Provenance,
    QualityMetrics,
    ReferenceRun,
    ReuseMode,
    SamplerInfo,
    Schedule,
    TailMetrics,
)
from ._scale_shift import ScaleShift
from ._yaml import dump_schedule, load_schedule, parse_schedule, save_schedule
from .policies import (
    BlockCachingAuto,
    BlockMask,
    BlockProfile,
    DeepCache,
    Full,
    Joint,
    MaskPolicy,
    MiddleCache,
    MiddleCacheAuto,
    PerBranch,
    PeriodicMask,
    Policy,
    StepSet,
    TaylorSeer,
    WithScaleShift,
    policy_from_dict,
)

__all__ = [
    "FORMAT",
    "Front",
    "FrontEntry",
    "FORMATS",
    "LOSS_STATS",
    "BlockCachingAuto",
    "BlockInfo",
    "BlockKind",
    "BlockEntry",
    "BlockMask",
    "BlockProfile",
    "BlockSpace",
    "DeepCache",
    "Full",
    "Joint",
    "LatencyMetrics",
    "LossStats",
    "MaskPolicy",
    "Metrics",
    "MiddleCache",
    "MiddleCacheAuto",
    "ModelInfo",
    "PerBranch",
    "PeriodicMask",
    "Policy",
    "Provenance",
    "QualityMetrics",
    "ReferenceRun",
    "ReuseMode",
    "SamplerInfo",
    "ScaleShift",
    "Schedule",
    "ScheduleError",
    "StepSet",
    "TailMetrics",
    "TaylorSeer",
    "WithScaleShift",
    "architecture_fingerprint",
    "fingerprint_mismatch",
    "dump_schedule",
    "load_front",
    "load_schedule",
    "parse_schedule",
    "policy_from_dict",
    "save_schedule",
]
