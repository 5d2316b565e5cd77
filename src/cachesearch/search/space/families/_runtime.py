"""What the runtime families (``fbcache``, ``magcache``, ``dbcache``, ``pab``, ``fastercache``, ``seacache``) share:
a library's own cache tuned as a search family. Their trials compile to runtime schedules (the library decides on
the device what computes), always on the reference steps; their cost is counted from what executed, per image.

A family whose library cannot enable its cache on the model (not installed, no ``enable_cache`` on the denoiser,
no cache-dit adapter) says why in :meth:`RuntimeFamily.unavailable`: a shipped space drops it with a note, a space
file of the user's is refused naming ``mask.families``.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any, ClassVar

from ....schedule import BlockSpace, CacheDiT, DiffusersCache, LibraryConfig, Policy
from ..context import SpaceContext, is_transformer
from ..params import Fields, IntParam
from .base import MaskFamily

__all__ = ["RuntimeFamily", "clamp_high", "config_of"]

_PROBLEMS: weakref.WeakKeyDictionary[Any, dict[str, str | None]] = weakref.WeakKeyDictionary()


def clamp_high(p: IntParam, cap: int) -> IntParam:
    """``p`` with a numeric ``high`` above ``cap`` lowered to it (and ``low`` to at most ``cap``)."""
    high = min(int(p.high), cap) if not isinstance(p.high, str) else p.high
    low = min(int(p.low), cap) if not isinstance(p.low, str) else p.low
    return IntParam(low=low, high=high, step=p.step, log=p.log)


def config_of(policy: Policy | None, method: str, arg: str = "config") -> LibraryConfig | None:
    """The config of ``policy`` passed as ``arg`` if it is of class ``method`` (else ``None``)."""
    if isinstance(policy, (DiffusersCache, CacheDiT)):
        cfg = policy.library_configs().get(arg)
        if cfg is not None and cfg.method == method:
            return cfg
    return None


class RuntimeFamily(MaskFamily):
    """Base of the families whose trials are a library's own cache (see the module docstring).

    Class attributes:
        library: ``diffusers`` or ``cache-dit``.
        method: the config class the family tunes (``FirstBlockCacheConfig``, ``DBCacheConfig``, ...).
    """

    library: ClassVar[str]
    method: ClassVar[str]
    reference_steps: ClassVar[bool] = True
    block_hooks: ClassVar[bool] = False
    """Whether the library's hooks look each block class up in diffusers' ``TransformerBlockRegistry``
    (FirstBlockCache, MagCache, SeaCache): a model whose block classes it lacks cannot run them."""

    @classmethod
    def supports(cls, blocks: BlockSpace) -> bool:
        return is_transformer(blocks)

    def unavailable(self, ctx: SpaceContext) -> str | None:
        """Why the family cannot run on the context's model (``None`` when it can)."""
        if ctx.pipe is None:
            return None  # no model to ask (a space checked on its own)
        known = _PROBLEMS.setdefault(ctx.pipe, {})
        if self.library not in known:
            from ....runtime import runtime_problem

            known[self.library] = runtime_problem(self.library, ctx.pipe)
        if known[self.library] is None and self.block_hooks:
            if "block_hooks" not in known:
                from ....adapters import denoiser_of, diffusers_hook_problem

                known["block_hooks"] = diffusers_hook_problem(denoiser_of(ctx.pipe))
            return known["block_hooks"]
        return known[self.library]

    def require(self, ctx: SpaceContext, fields: Fields) -> None:
        """Refuse a model the family cannot run on, naming ``mask.families``."""
        why = self.unavailable(ctx)
        if why is not None:
            raise fields.error("mask.families", f"family {self.name!r} cannot run here: {why}; remove it")

    @staticmethod
    def diffusers(method: str, **fields: Any) -> DiffusersCache:
        """A :class:`DiffusersCache` of ``method`` with ``fields``."""
        return DiffusersCache(LibraryConfig(method=method, fields=fields))

    def values(self, cfg: LibraryConfig, names: Mapping[str, str]) -> dict[str, Any]:
        """``{parameter: cfg.fields[field]}`` for ``names = {parameter: field}`` (missing fields skipped)."""
        return {p: cfg.fields[f] for p, f in names.items() if f in cfg.fields}
