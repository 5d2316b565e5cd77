"""The ``runtime`` section of a runtime schedule file (format @4): the library, its version and the configs of its
``enable_cache``, each ``{method: <config class>, <field>: <value>, ...}``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import yaml

from ._errors import ScheduleError, short_repr
from ._fields import _mapping, _str
from ._runtime import LIBRARIES, LibraryConfig, RuntimeCache

__all__ = ["parse_runtime", "runtime_lines"]


def parse_runtime(d: Any) -> RuntimeCache:
    """``runtime: {library, version, <enable_cache argument>: {method: ..., <field>: ...}, ...}``."""
    if not isinstance(d, Mapping) or not isinstance(d.get("library"), str):
        raise ScheduleError(f"runtime: expected a mapping with 'library' (one of {sorted(LIBRARIES)}), 'version' "
                            f"and the configs of its enable_cache")
    lib = LIBRARIES.get(d["library"])
    if lib is None:
        raise ScheduleError(f"runtime.library: expected one of {sorted(LIBRARIES)}, got {short_repr(d['library'])}")
    r = _mapping("runtime", d, {"library", "version", *lib.required}, set(lib.args))
    configs = {name: LibraryConfig.parse(f"runtime.{name}", r[name]) for name in lib.args if r.get(name) is not None}
    return RuntimeCache(library=lib.name, version=_str("runtime.version", r["version"], nullable=True),
                        configs=configs)


def _scalar(value: Any) -> str:
    """One plain scalar as YAML (quoted when it would read as another type: ``'1.5'``)."""
    return yaml.safe_dump(value, width=1 << 16).removesuffix("\n...\n").strip()


def runtime_lines(runtime: RuntimeCache, flow: Callable[[dict[str, Any]], str]) -> list[str]:
    """The section's lines; ``flow`` writes a one-line mapping (the schedule dumper's)."""
    lines = ["runtime:", f"  library: {_scalar(runtime.library)}", f"  version: {_scalar(runtime.version)}"]
    for name, cfg in runtime.configs.items():
        lines.append(f"  {name}: " + flow(cfg.to_plain()))
    return lines
