"""The libraries behind runtime schedules: import them, find their config classes, rebuild configs from plain data.

A runtime schedule stores each config of a library's ``enable_cache`` as a
:class:`~cachesearch.schedule.LibraryConfig` (class name + plain fields). Here they become the library's own
objects again, checked against the *installed* library: an unknown method or a field it does not have is a
:class:`ScheduleError` naming the field; values are converted back where a field needs more than plain data (a list
to a tuple, a dtype name to a ``torch.dtype``, an enum member's name to the member, the
:data:`~cachesearch.schedule._runtime.PIPELINE_TIMESTEP` marker to a callback) and the config class's own checks
run. cache-dit is imported only here, and only when a cache-dit schedule is compiled, applied or read.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import os
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import torch

from ..schedule import ScheduleError
from ..schedule._errors import short_repr
from ..schedule._runtime import (
    LIBRARIES,
    PIPELINE_TIMESTEP,
    REBUILT_CALLBACKS,
    LibraryConfig,
    RuntimeCache,
    library_config,
)

__all__ = [
    "build_config",
    "check_installed_runtime",
    "config_classes",
    "full_config",
    "import_library",
    "library_version",
]


def import_library(name: str, path: str = "runtime.library") -> ModuleType:
    """The library's module; :class:`ScheduleError` naming the extra to install when it is missing."""
    lib = LIBRARIES[name]
    if name == "cache-dit":
        os.environ.setdefault("CACHE_DIT_LOG_LEVEL", "error")  # its INFO lines on every enable/disable
    try:
        return importlib.import_module(lib.module)
    except ModuleNotFoundError as e:
        if e.name is not None and e.name.split(".")[0] != lib.module:
            raise ScheduleError(f"{path}: {lib.name} is installed but cannot be imported ({e}); reinstall it: "
                                f"{lib.install_hint()}") from None
        raise ScheduleError(f"{path}: {lib.name} is not installed; install it: {lib.install_hint()}") from None


def library_version(name: str) -> str | None:
    """The installed version of the library (``None`` if it does not say)."""
    version = getattr(import_library(name), "__version__", None)
    return str(version) if version else None


def config_classes(name: str, arg: str) -> dict[str, type]:
    """The config classes the installed library accepts for its ``enable_cache`` argument ``arg``, by name."""
    module = import_library(name)
    if name == "diffusers":
        import diffusers.hooks as hooks

        found = {n: getattr(hooks, n) for n in dir(hooks)
                 if n.endswith("Config") and ("Cache" in n or "Broadcast" in n)}
    else:
        base = module.BasicCacheConfig if arg == "cache_config" else module.CalibratorConfig
        found = {n: getattr(module, n) for n in dir(module)}
        found = {n: c for n, c in found.items() if isinstance(c, type) and issubclass(c, base) and c is not base}
    return {n: c for n, c in sorted(found.items()) if dataclasses.is_dataclass(c)}


def _config_class(name: str, arg: str, method: str, path: str) -> type:
    classes = config_classes(name, arg)
    cls = classes.get(method)
    if cls is None:
        raise ScheduleError(f"{path}.method: {method!r} is not a {arg} of {name} {library_version(name)}; "
                            f"expected one of {sorted(classes)}")
    return cls


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    return value


def _rebuild(path: str, f: dataclasses.Field, value: Any, timestep: Callable[[], Any] | None) -> Any:
    """A plain value as the field wants it (see the module docstring); :class:`ScheduleError` naming ``path``."""
    value = _thaw(value)
    if value is None:
        return None
    if f.name in REBUILT_CALLBACKS:
        if value != PIPELINE_TIMESTEP:
            raise ScheduleError(f"{path}: expected {PIPELINE_TIMESTEP!r} (rebuilt on apply), got {short_repr(value)}")
        if timestep is None:
            raise ScheduleError(f"{path}: reads the pipeline's current timestep; apply the schedule to the pipeline, "
                                f"not to its bare denoiser")
        return timestep
    default = _default(f)
    annotation = str(f.type)
    if isinstance(default, torch.dtype) or "dtype" in annotation:
        dtype = getattr(torch, value, None) if isinstance(value, str) else None
        if not isinstance(dtype, torch.dtype):
            raise ScheduleError(f"{path}: expected a torch dtype name (float32, bfloat16, ...), "
                                f"got {short_repr(value)}")
        return dtype
    if isinstance(default, enum.Enum):
        members = type(default).__members__
        if value not in members:
            raise ScheduleError(f"{path}: expected one of {sorted(members)}, got {short_repr(value)}")
        return members[value]
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, (tuple, list)):
        ok = isinstance(value, list)
    else:  # no telling default: refuse only a string where the annotation wants a number
        numeric = ("float" in annotation or "int" in annotation) and not any(
            t in annotation for t in ("str", "Callable", "list", "List", "Dict", "dict"))
        ok = not (numeric and isinstance(value, str))
    if not ok:
        want = type(default).__name__ if default is not None and default is not dataclasses.MISSING else annotation
        raise ScheduleError(f"{path}: expected {want}, got {short_repr(value)}")
    return tuple(value) if isinstance(default, tuple) else value


def build_config(name: str, arg: str, cfg: LibraryConfig, path: str,
                 timestep: Callable[[], Any] | None = None) -> Any:
    """The installed library's config object for ``cfg`` (``path`` names it in errors, e.g. ``runtime.config``).

    ``timestep``: what a ``current_timestep_callback`` is rebuilt as (``lambda: pipe.current_timestep``);
    ``None`` refuses one (a bare denoiser has no pipeline).
    """
    cls = _config_class(name, arg, cfg.method, path)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in cfg.fields.items():
        f = fields.get(key)
        if f is None:
            raise ScheduleError(f"{path}.{key}: {cls.__name__} of {name} {library_version(name)} has no field "
                                f"{key!r}; its fields: {sorted(k for k in fields if not k.startswith('_'))}")
        kwargs[key] = _rebuild(f"{path}.{key}", f, value, timestep)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, AssertionError, KeyError) as e:
        raise ScheduleError(f"{path}: {cls.__name__} refused these values: {e}") from None


def full_config(name: str, arg: str, cfg: LibraryConfig, path: str,
                overrides: Mapping[str, Any] | None = None) -> LibraryConfig:
    """``cfg`` with every field of the installed config class (what a runtime schedule records), after
    ``overrides`` (e.g. ``num_inference_steps``) and the class's own processing (MagCache turns its ratios into a
    tensor and resamples them to its steps)."""
    fields = {**cfg.fields, **(overrides or {})}
    obj = build_config(name, arg, LibraryConfig(method=cfg.method, fields=fields), path, timestep=_placeholder)
    return library_config(path, obj, full=True)


def _placeholder() -> None:
    """Stands for the pipeline's current timestep while a config is only built to be checked or recorded."""
    return None


def check_installed_runtime(runtime: RuntimeCache) -> None:
    """Check a runtime cache read from a file against the installed library (a :class:`ScheduleError` naming the
    extra to install when it is missing, or the field the installed version does not have)."""
    for arg, cfg in runtime.configs.items():
        build_config(runtime.library, arg, cfg, f"runtime.{arg}", timestep=_placeholder)
