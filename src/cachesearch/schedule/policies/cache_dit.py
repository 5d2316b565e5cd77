"""``CacheDiT``: cache-dit's DBCache (optionally with a calibrator), enabled with ``cache_dit.enable_cache``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .._errors import ScheduleError
from .._runtime import LibraryConfig, library_config
from ._runtime_names import runtime_name
from .base import Policy, RuntimePolicy, register_policy

__all__ = ["CacheDiT"]


@register_policy
@dataclass(frozen=True, kw_only=True)
class CacheDiT(RuntimePolicy):
    """cache-dit's Dual Block Cache decided at run time on the device (a runtime schedule).

    ``cs.CacheDiT(cache_config=DBCacheConfig(Fn_compute_blocks=1, residual_diff_threshold=0.12),
    calibrator_config=TaylorSeerCalibratorConfig(taylorseer_order=1))`` compiles to a schedule whose file records
    cache-dit's version and both configs as plain YAML; applying it calls ``cache_dit.enable_cache(...)`` with
    them and removing it ``cache_dit.disable_cache(...)``. cache-dit is optional: ``pip install
    'cachesearch[cache-dit]'``.

    Args:
        cache_config: a ``DBCacheConfig`` (or ``DBPruneConfig``), or its plain form ``{"method": "DBCacheConfig",
            ...}``. Only fields that differ from their defaults are kept; ``num_inference_steps`` is set to the
            schedule's steps when compiled.
        calibrator_config: ``None`` or a calibrator config (``TaylorSeerCalibratorConfig(taylorseer_order=2)``, ...).
    """

    kind: ClassVar[str] = "cachedit"
    library: ClassVar[str] = "cache-dit"
    cache_config: LibraryConfig
    calibrator_config: LibraryConfig | None = None

    def __post_init__(self) -> None:
        cache = library_config("policy.cache_config", self.cache_config)
        if cache is None:
            raise ScheduleError("policy.cache_config: required: a cache-dit cache config such as "
                                "DBCacheConfig(residual_diff_threshold=0.08)")
        object.__setattr__(self, "cache_config", cache)
        object.__setattr__(self, "calibrator_config",
                           library_config("policy.calibrator_config", self.calibrator_config))

    def library_configs(self) -> dict[str, LibraryConfig]:
        out = {"cache_config": self.cache_config}
        if self.calibrator_config is not None:
            out["calibrator_config"] = self.calibrator_config
        return out

    def default_name(self, num_steps: int) -> str:
        name = runtime_name(self.cache_config.method, self.cache_config.fields)
        if self.calibrator_config is not None:
            name += "-" + runtime_name(self.calibrator_config.method, self.calibrator_config.fields)
        return name

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "cache_config": self.cache_config.to_plain(),
                "calibrator_config": None if self.calibrator_config is None else self.calibrator_config.to_plain()}

    @classmethod
    def from_dict(cls, args: Mapping[str, Any], path: str) -> Policy:
        unknown = set(args) - {"cache_config", "calibrator_config"}
        if unknown or "cache_config" not in args:
            raise ScheduleError(f"{path}: kind 'cachedit' takes 'cache_config' and optionally 'calibrator_config', "
                                f"got {sorted(args)}")
        calibrator = args.get("calibrator_config")
        return cls(cache_config=LibraryConfig.parse(f"{path}.cache_config", args["cache_config"]),
                   calibrator_config=None if calibrator is None else
                   LibraryConfig.parse(f"{path}.calibrator_config", calibrator))
