"""Small helpers every layer shares: atomic writes, UTC timestamps, JSON-safe values, device description.

Stdlib only at import time (torch is imported inside :func:`device_description`), so the schedule layer may
use it too.
"""

from __future__ import annotations

import datetime as _dt
import enum
import functools
import importlib
import math
import os
import platform
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ._atomic import atomic_write

__all__ = [
    "atomic_write",
    "device_description",
    "is_num",
    "json_safe",
    "lazy_exports",
    "relative_path",
    "save_figure",
    "utc_now",
]


def is_num(v: Any) -> bool:
    """A finite int or float that is not a bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def lazy_exports(
    package: str, modules: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's module ``__getattr__`` and ``__dir__`` for names that load their module on first use.

    ``modules`` maps each lazy name to its module, relative to ``package`` (``"._quality"``) or absolute; a loaded
    name is stored in ``namespace`` (the package's ``globals()``), so it is looked up once. ``dir()`` lists the
    loaded names and ``__all__``.
    """

    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(namespace.get("__all__", ())))

    return __getattr__, __dir__


def utc_now() -> str:
    """The current UTC time as ``2026-11-23T12:00:00Z`` (seconds precision), as written in every file."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON data: mappings → dicts with str keys, sequences → lists, NaN/inf → ``None``,
    numpy/torch scalars → Python numbers, enums → their value, paths and anything else → ``str``."""
    if isinstance(value, enum.Enum):
        return json_safe(value.value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        return json_safe(value.item())
    return str(value)


@functools.lru_cache(maxsize=1)
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def device_description(device: Any = "cpu") -> str:
    """Human-readable device stored with every measurement.

    ``"cuda: <device name>"`` for CUDA devices; ``"cpu: <cpu model> (<n> threads)"`` for CPU, with torch's
    intra-op thread count, which CPU timings depend on.
    """
    import torch

    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return f"cuda: unavailable ({dev})"
        return f"cuda: {torch.cuda.get_device_name(dev)}"
    if dev.type == "cpu":
        return f"cpu: {_cpu_model()} ({torch.get_num_threads()} threads)"
    return str(dev)


CACHE_ENV = "CACHESEARCH_CACHE_DIR"


def default_cache_dir() -> str:
    """Where reference images are cached unless ``--cache-dir`` says otherwise: ``$CACHESEARCH_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/cachesearch``, else ``~/.cache/cachesearch`` — one folder per user, wherever a command
    runs (never a folder relative to the current directory). Returned as given (``~`` unexpanded), so records
    that store it name no home folder of this machine; readers expand it."""
    given = os.environ.get(CACHE_ENV)
    if given:
        return given
    xdg = os.environ.get("XDG_CACHE_HOME")
    return os.path.join(xdg, "cachesearch") if xdg and os.path.isabs(xdg) else "~/.cache/cachesearch"


def relative_path(path: str | os.PathLike[str], base: str | os.PathLike[str] | None = None) -> str:
    """``path`` as written into results, reports and committed artifacts: relative to ``base`` (default the
    current directory), POSIX separators, never this machine's absolute path."""
    here = Path(base) if base is not None else Path.cwd()
    return Path(os.path.relpath(Path(path).resolve(), here.resolve())).as_posix()


def save_figure(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Render a matplotlib figure to PNG and write it atomically (a crash never leaves half an image)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write(path, buf.getvalue())
