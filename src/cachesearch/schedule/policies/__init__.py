"""Policy families, one module each, registered by kind (see :mod:`.base`).

Adding a family is one new module that decorates its class with :func:`register_policy`, plus its import
below: importing a family's module is what registers it, so this package imports every shipped family.
"""

from .base import (
    MaskPolicy,
    Masks,
    Policy,
    RuntimePolicy,
    policy_class,
    policy_format,
    policy_from_dict,
    policy_kinds,
    register_policy,
)
from .block_caching import BlockCachingAuto, BlockProfile, CachedBlocks
from .block_mask import BlockMask
from .cache_dit import CacheDiT
from .deepcache import DeepCache
from .diffusers_cache import DiffusersCache
from .full import Full
from .joint import Joint
from .middle import MiddleCache
from .middle_auto import MiddleCacheAuto
from .per_branch import PerBranch
from .periodic import PeriodicMask
from .scale_shifted import WithScaleShift, scale_shift_request
from .step_set import StepSet
from .taylorseer import TaylorSeer

__all__ = [
    "BlockCachingAuto",
    "BlockMask",
    "BlockProfile",
    "CacheDiT",
    "CachedBlocks",
    "DeepCache",
    "DiffusersCache",
    "Full",
    "Joint",
    "MaskPolicy",
    "Masks",
    "MiddleCache",
    "MiddleCacheAuto",
    "PerBranch",
    "PeriodicMask",
    "Policy",
    "RuntimePolicy",
    "StepSet",
    "TaylorSeer",
    "WithScaleShift",
    "policy_class",
    "policy_format",
    "policy_from_dict",
    "policy_kinds",
    "register_policy",
    "scale_shift_request",
]
