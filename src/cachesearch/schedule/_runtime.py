"""The runtime kind of schedule: a library's own dynamic cache, as the library, its version and plain configs.

Dynamic caches (diffusers' FirstBlockCache and MagCache, cache-dit's DBCache, ...) decide on the device at run
time which blocks compute; no step × block mask describes them. A runtime schedule records what to enable instead:
the library, the version it was made with, and the arguments of that library's ``enable_cache`` as plain data
(``config`` for diffusers' ``denoiser.enable_cache(config)``; ``cache_config`` and ``calibrator_config`` for
``cache_dit.enable_cache(...)``), each a :class:`LibraryConfig`: the config class's name (``method``) and its fields.

Only plain values are stored (``None``, booleans, numbers, strings, lists and string-keyed mappings of them). A
library config object is converted here without importing the library (duck typing): tuples become lists,
tensors and arrays their ``tolist()``, a ``torch.dtype`` its name (``"float32"``), an enum member its name; a
callback that only reads the pipeline's current timestep (``current_timestep_callback``) becomes the marker
:data:`PIPELINE_TIMESTEP` and is rebuilt when the schedule is applied; any other callable is refused with a
:class:`ScheduleError` naming the field. The runtime layer rebuilds the library objects from these values and
checks them against the installed library (a field it does not have, an unknown method) when the schedule is
compiled or applied; reading a file checks only what needs no library (plain values, bounds such as a
non-negative threshold).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import ScheduleError, short_repr

__all__ = [
    "LIBRARIES",
    "PIPELINE_TIMESTEP",
    "Library",
    "LibraryConfig",
    "PlainMapping",
    "RuntimeCache",
    "library_config",
    "plain_value",
]

PIPELINE_TIMESTEP = "pipeline.current_timestep"
"""Plain marker of a ``current_timestep_callback`` (diffusers' PAB and FasterCache): rebuilt on apply as
``lambda: pipe.current_timestep``, the callback diffusers' documentation passes."""
REBUILT_CALLBACKS = {"current_timestep_callback": PIPELINE_TIMESTEP}
"""Callable fields that are stored as a marker and rebuilt on apply (any other callable is refused)."""
_METHOD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_DEPTH = 6


@dataclass(frozen=True)
class Library:
    """A library whose caches a runtime schedule can enable.

    Attributes:
        name: as written in schedule files (``diffusers``, ``cache-dit``).
        module: the Python module to import (``diffusers``, ``cache_dit``).
        args: the keyword arguments of its ``enable_cache`` that take a config, in call order.
        required: those of ``args`` a schedule must give.
        extra: the cachesearch extra that installs it (``None``: a core dependency).
    """

    name: str
    module: str
    args: tuple[str, ...]
    required: tuple[str, ...]
    extra: str | None

    def install_hint(self) -> str:
        """How to install the library (``pip install 'cachesearch[cache-dit]'``)."""
        return f"pip install 'cachesearch[{self.extra}]'" if self.extra else f"pip install {self.name}"


LIBRARIES: dict[str, Library] = {
    "diffusers": Library("diffusers", "diffusers", ("config",), ("config",), None),
    "cache-dit": Library("cache-dit", "cache_dit", ("cache_config", "calibrator_config"), ("cache_config",),
                         "cache-dit"),
}
"""The libraries a runtime schedule can name, by the name schedule files use."""

# Bounds the schedule layer checks by field name (whatever the library): a threshold is never negative, a count of
# steps or blocks never below its floor. The installed library checks the rest when the runtime builds its config.
_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "threshold": (0.0, None), "residual_diff_threshold": (0.0, None),
    "max_accumulated_residual_diff_threshold": (0.0, None), "retention_ratio": (0.0, 1.0),
    "max_skip_steps": (0, None), "num_inference_steps": (1, None), "cache_interval": (1, None),
    "disable_cache_before_step": (0, None), "max_order": (0, None), "Fn_compute_blocks": (1, None),
    "Bn_compute_blocks": (0, None), "max_warmup_steps": (0, None), "warmup_interval": (1, None),
    "max_cached_steps": (-1, None), "max_continuous_cached_steps": (-1, None), "taylorseer_order": (0, None),
    "spatial_attention_block_skip_range": (1, None), "temporal_attention_block_skip_range": (1, None),
    "cross_attention_block_skip_range": (1, None), "unconditional_batch_skip_range": (1, None),
    "retention_steps": (0, None), "cache_end_steps": (0, None), "max_consecutive_cached": (0, None),
    "residual_order": (0, None),
}


class PlainMapping(Mapping[str, Any]):
    """A read-only, hashable mapping of plain values (lists kept as tuples, mappings as ``PlainMapping``)."""

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[str, Any] = ()) -> None:
        self._data: dict[str, Any] = {k: _freeze(v) for k, v in dict(data).items()}
        self._hash: int | None = None

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(tuple(self._data.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PlainMapping):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == {k: _freeze(v) for k, v in other.items()}
        return NotImplemented

    def __repr__(self) -> str:
        return repr(self._data)

    def to_plain(self) -> dict[str, Any]:
        """A ``dict`` with lists (what YAML and JSON write)."""
        return {k: _thaw(v) for k, v in self._data.items()}


def _freeze(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping) and not isinstance(value, PlainMapping):
        return PlainMapping(value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    if isinstance(value, PlainMapping):
        return value.to_plain()
    return value


def plain_value(path: str, value: Any, *, field: str | None = None, depth: int = 0) -> Any:
    """``value`` as plain data (see the module docstring); :class:`ScheduleError` naming ``path`` otherwise."""
    if depth > _MAX_DEPTH:
        raise ScheduleError(f"{path}: nested more than {_MAX_DEPTH} levels deep")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ScheduleError(f"{path}: expected a finite number, got {value}")
        return float(value)
    if isinstance(value, enum.Enum):
        return value.name
    kind = type(value)
    if kind.__module__ == "torch" and kind.__name__ == "dtype":  # torch.float32 -> "float32"
        return str(value).removeprefix("torch.")
    if hasattr(value, "tolist") and hasattr(value, "shape"):  # a tensor or an array: its values
        return plain_value(path, value.tolist(), field=field, depth=depth + 1)
    if hasattr(value, "item") and hasattr(value, "dtype"):  # a numpy scalar
        return plain_value(path, value.item(), field=field, depth=depth + 1)
    if isinstance(value, (list, tuple)):
        return [plain_value(f"{path}[{i}]", v, depth=depth + 1) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ScheduleError(f"{path}: mapping keys must be strings, got {short_repr(k)}")
            out[k] = plain_value(f"{path}.{k}", v, depth=depth + 1)
        return out
    if callable(value):
        if field in REBUILT_CALLBACKS:
            return REBUILT_CALLBACKS[field]
        raise ScheduleError(
            f"{path}: a callable ({short_repr(value)}) cannot be written to a schedule file (plain YAML); leave it "
            f"None (the library's default) or use a config without callbacks"
        )
    raise ScheduleError(f"{path}: {type(value).__name__} {short_repr(value)} is not plain data (numbers, strings, "
                        f"booleans, null, lists and mappings of them)")


def _check_bounds(path: str, config: Mapping[str, Any]) -> None:
    for key, value in config.items():
        bounds = _BOUNDS.get(key)
        if bounds is None or value is None:
            continue
        lo, hi = bounds
        integer = isinstance(lo, int) and isinstance(hi, (int, type(None)))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
            raise ScheduleError(f"{path}.{key}: expected {'an integer' if integer else 'a number'}, "
                                f"got {short_repr(value)}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            within = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            raise ScheduleError(f"{path}.{key}: expected a number {within}, got {value}")


@dataclass(frozen=True, kw_only=True)
class LibraryConfig:
    """One config object of a library as plain data: its class name (``method``) and its fields.

    In files it is one mapping, ``{method: FirstBlockCacheConfig, threshold: 0.1}``.
    """

    method: str
    fields: PlainMapping

    def __post_init__(self) -> None:
        if not isinstance(self.method, str) or not _METHOD.fullmatch(self.method):
            raise ScheduleError(f"method: expected the name of a config class (FirstBlockCacheConfig, "
                                f"DBCacheConfig, ...), got {short_repr(self.method)}")
        if not isinstance(self.fields, PlainMapping):
            object.__setattr__(self, "fields", PlainMapping(self.fields))

    @classmethod
    def parse(cls, path: str, value: Any) -> LibraryConfig:
        """From its plain form ``{method: ..., <field>: <value>, ...}`` (``path`` names it in errors)."""
        if not isinstance(value, Mapping) or "method" not in value:
            raise ScheduleError(f"{path}: expected a mapping with a 'method' (the config class) and its fields, "
                                f"e.g. {{method: FirstBlockCacheConfig, threshold: 0.1}}")
        method = value["method"]
        if not isinstance(method, str) or not _METHOD.fullmatch(method):
            raise ScheduleError(f"{path}.method: expected the name of a config class, got {short_repr(method)}")
        fields = {}
        for k, v in value.items():
            if k == "method":
                continue
            if not isinstance(k, str) or not _METHOD.fullmatch(k):
                raise ScheduleError(f"{path}: field names must be identifiers, got {short_repr(k)}")
            fields[k] = plain_value(f"{path}.{k}", v, field=k)
        _check_bounds(path, fields)
        return cls(method=method, fields=PlainMapping(fields))

    def to_plain(self) -> dict[str, Any]:
        """``{method: ..., **fields}`` with lists."""
        return {"method": self.method, **self.fields.to_plain()}


def library_config(path: str, value: Any, *, full: bool = False) -> LibraryConfig | None:
    """A :class:`LibraryConfig` from a library's config object (a dataclass: its fields that differ from their
    defaults, or every field with ``full``), a :class:`LibraryConfig`, or its plain mapping; ``None`` stays None.

    Fields whose name starts with ``_`` are kept only when they differ from their default.
    """
    if value is None or isinstance(value, LibraryConfig):
        return value
    if isinstance(value, Mapping):
        return LibraryConfig.parse(path, value)
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        raise ScheduleError(f"{path}: expected a library cache config (FirstBlockCacheConfig(...), "
                            f"DBCacheConfig(...), ...) or its plain form {{method: ..., ...}}, got "
                            f"{short_repr(value)}")
    out: dict[str, Any] = {"method": type(value).__name__}
    for f in dataclasses.fields(value):
        if not f.init:
            continue
        v = getattr(value, f.name)
        if (not full or f.name.startswith("_")) and _is_default(f, v):
            continue
        out[f.name] = plain_value(f"{path}.{f.name}", v, field=f.name)
    return LibraryConfig.parse(path, out)


def _is_default(f: dataclasses.Field, value: Any) -> bool:
    if f.default is not dataclasses.MISSING:
        default = f.default
    elif f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    else:
        return False
    if value is default:
        return True
    plain = (type(None), bool, int, float, str, tuple, list, dict, enum.Enum)
    if isinstance(value, plain) and isinstance(default, plain):
        try:
            return bool(value == default) and type(value) is type(default)
        except Exception:  # noqa: BLE001 - an odd __eq__: not a default
            return False
    return False


@dataclass(frozen=True, kw_only=True)
class RuntimeCache:
    """What a runtime schedule enables: ``library``'s ``enable_cache`` with ``configs`` (by argument name).

    Attributes:
        library: a name of :data:`LIBRARIES` (``diffusers`` or ``cache-dit``).
        version: the library version the schedule was made with (applying with another version warns).
        configs: ``{"config": ...}`` for diffusers, ``{"cache_config": ..., "calibrator_config": ...}`` for
            cache-dit (an unset calibrator is left out).
    """

    library: str
    version: str | None
    configs: Mapping[str, LibraryConfig]

    def __post_init__(self) -> None:
        lib = LIBRARIES.get(self.library) if isinstance(self.library, str) else None
        if lib is None:
            raise ScheduleError(f"runtime.library: expected one of {sorted(LIBRARIES)}, got {short_repr(self.library)}")
        if self.version is not None and (not isinstance(self.version, str) or not self.version):
            raise ScheduleError(f"runtime.version: expected a version string or null, got {short_repr(self.version)}")
        configs = dict(self.configs)
        for name in configs:
            if name not in lib.args:
                raise ScheduleError(f"runtime.{name}: {lib.name}'s enable_cache takes {list(lib.args)}, not {name!r}")
        for name in lib.required:
            if configs.get(name) is None:
                raise ScheduleError(f"runtime.{name}: required by {lib.name}'s enable_cache")
        for name, value in configs.items():
            if not isinstance(value, LibraryConfig):
                raise ScheduleError(f"runtime.{name}: expected a LibraryConfig, got {short_repr(value)}")
        object.__setattr__(self, "configs", PlainMapping({n: configs[n] for n in lib.args if n in configs}))

    @property
    def method(self) -> str:
        """The method: the class name of the first config (``FirstBlockCacheConfig``, ``DBCacheConfig``)."""
        return next(iter(self.configs.values())).method

    def to_plain(self) -> dict[str, Any]:
        """The file's ``runtime`` mapping."""
        return {"library": self.library, "version": self.version,
                **{name: cfg.to_plain() for name, cfg in self.configs.items()}}
