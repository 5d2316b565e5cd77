"""The search side of each policy family, one module each; the mask families are registered here.

A new family: one module with a :class:`MaskFamily` subclass, and one :func:`register` line below (the
registration order is the order in which its parameters are suggested, after those of earlier families).
"""

from ._runtime import RuntimeFamily
from .base import BaselineGrid, Family, MaskFamily, mask_families, register
from .blockcaching import BlockCachingFamily
from .components import ComponentsFamily
from .dbcache import DBCacheFamily
from .deepcache import DeepCacheFamily
from .fastercache import FasterCacheFamily
from .fbcache import FBCacheFamily
from .magcache import MagCacheFamily
from .middle import MiddleFamily
from .middleauto import MiddleAutoFamily
from .none import NoCaching
from .pab import PABFamily
from .periodic import PeriodicFamily
from .seacache import SeaCacheFamily
from .steps import SPACINGS, Steps
from .taylorseer import TaylorSeerFamily

register(NoCaching)
register(DeepCacheFamily)
register(PeriodicFamily)
register(BlockCachingFamily)
register(TaylorSeerFamily)  # the transformer-denoiser families (refused on other denoisers)
register(MiddleFamily)
register(ComponentsFamily)
register(MiddleAutoFamily)  # after the older ones: the suggestion order of the spaces that predate it stays
register(FBCacheFamily)  # the runtime families: a library's own cache decides on the device (issue 27)
register(MagCacheFamily)
register(DBCacheFamily)
register(PABFamily)
register(FasterCacheFamily)
register(SeaCacheFamily)


def baseline_families() -> dict[str, type[Family]]:
    """The families that have baselines, by kind, in the order their baselines are enqueued: the step set,
    then the mask families in registration order."""
    out: dict[str, type[Family]] = {Steps.name: Steps}
    out.update({n: c for n, c in mask_families().items() if c.grid is not None})
    return out


__all__ = [
    "SPACINGS",
    "BaselineGrid",
    "BlockCachingFamily",
    "ComponentsFamily",
    "DBCacheFamily",
    "DeepCacheFamily",
    "FBCacheFamily",
    "FasterCacheFamily",
    "Family",
    "MagCacheFamily",
    "MaskFamily",
    "MiddleAutoFamily",
    "MiddleFamily",
    "NoCaching",
    "PABFamily",
    "PeriodicFamily",
    "RuntimeFamily",
    "SeaCacheFamily",
    "Steps",
    "TaylorSeerFamily",
    "baseline_families",
    "mask_families",
    "register",
]
