"""``DiffusersCache``: one of diffusers' own cache hooks, enabled with ``denoiser.enable_cache(config)``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._errors import ScheduleError
from .._runtime import LibraryConfig, library_config
from ._runtime_names import runtime_name
from .base import Policy, RuntimePolicy, register_policy

__all__ = ["DiffusersCache"]


@register_policy
@dataclass(frozen=True, kw_only=True)
class DiffusersCache(RuntimePolicy):
    """A cache hook of the installed diffusers, decided at run time on the device (a runtime schedule).

    ``cs.DiffusersCache(FirstBlockCacheConfig(threshold=0.2))`` compiles to a schedule whose file records diffusers'
    version, the config's class and its fields as plain YAML; applying it calls the denoiser's own
    ``enable_cache(config)`` and removing it ``disable_cache()``. Any cache config of the installed diffusers:
    ``FirstBlockCacheConfig``, ``MagCacheConfig``, ``TaylorSeerCacheConfig``, ``FasterCacheConfig``,
    ``PyramidAttentionBroadcastConfig``, ``SeaCacheConfig``, ``TextKVCacheConfig``.

    Args:
        config: the config object, or its plain form ``{"method": "FirstBlockCacheConfig", "threshold": 0.2}``.
            Only fields that differ from their defaults are kept; ``num_inference_steps`` (MagCache) is set to the
            schedule's steps when compiled. A ``current_timestep_callback`` (PAB, FasterCache) is rebuilt on apply
            as ``lambda: pipe.current_timestep``; other callables cannot be stored and are refused.
    """

    kind: ClassVar[str] = "diffusers"
    library: ClassVar[str] = "diffusers"
    config: LibraryConfig = field(kw_only=False)

    def __post_init__(self) -> None:
        cfg = library_config("policy.config", self.config)
        if cfg is None:
            raise ScheduleError("policy.config: required: a diffusers cache config such as "
                                "FirstBlockCacheConfig(threshold=0.1)")
        object.__setattr__(self, "config", cfg)

    def library_configs(self) -> dict[str, LibraryConfig]:
        return {"config": self.config}

    def default_name(self, num_steps: int) -> str:
        return runtime_name(self.config.method, self.config.fields)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "config": self.config.to_plain()}

    @classmethod
    def from_dict(cls, args: Mapping[str, Any], path: str) -> Policy:
        if set(args) != {"config"}:
            raise ScheduleError(f"{path}: kind 'diffusers' takes exactly the key 'config', got {sorted(args)}")
        return cls(LibraryConfig.parse(f"{path}.config", args["config"]))
