"""cache-dit's ``enable_cache`` / ``disable_cache`` for a runtime schedule, with exact removal.

**Which object is enabled.** What a user would pass by hand: the pipeline (or bare transformer) itself when
cache-dit's registry knows its class (``BlockAdapterRegister.is_supported``: class-name prefixes ``Flux``,
``Wan``, ...); otherwise the ``BlockAdapter`` that cache-dit's registered factory builds for it, found by the class
names along its MRO and, for a pipeline, its denoiser's (``EmbeddedFluxPipeline`` subclasses ``FluxPipeline``;
``GuidedFluxTransformer2DModel`` subclasses ``FluxTransformer2DModel``). A bare transformer goes through
cache-dit's transformer-only path (a ``FakeDiffusionPipeline``, persistent contexts refreshed every
``num_inference_steps`` calls); a pipeline gets fresh contexts at every call (cache-dit wraps the pipeline class's
``__call__`` while enabled).

**Removal.** ``disable_cache`` releases cache-dit's hooks but leaves an instance ``forward`` on the modules it
patched, and every call's ``mock.patch`` of the block lists moves them to the end of their parent's module dict
(which reorders the parameters and so changes cachesearch's architecture fingerprint). :class:`Snapshot` records
every module's attribute names, instance ``forward`` and child order (and the pipeline's, and its class's
``__call__``) before enabling and puts them back after disabling.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from typing import Any

import torch

from ..schedule import ScheduleError
from ._libraries import import_library, library_version

__all__ = ["Snapshot", "adapter_target", "disable", "enable"]

_MISSING = object()
_KEEP = frozenset({"_cachesearch_applied"})  # our own handle attribute is set and removed by the handle


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """cache-dit prints its context summaries; keep them out of the user's stdout."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _factory(register: Any, obj: Any) -> Callable[..., Any] | None:
    """cache-dit's adapter factory whose class-name prefix matches a class in ``obj``'s MRO, or ``None``."""
    adapters = register._adapters  # {prefix: factory}; the registry has no public lookup by class
    for cls in type(obj).__mro__:
        for prefix, factory in adapters.items():
            if cls.__name__.startswith(prefix):
                return factory
    return None


def adapter_target(pipe: Any | None, denoiser: torch.nn.Module) -> Any:
    """What to pass to ``cache_dit.enable_cache`` for ``pipe`` (or the bare ``denoiser`` when ``pipe`` is None).

    Raises:
        ScheduleError: cache-dit has no adapter for the pipeline nor its denoiser (names both classes).
    """
    import_library("cache-dit", "runtime.cache_config")
    from cache_dit.caching.block_adapters import BlockAdapterRegister, FakeDiffusionPipeline

    target = pipe if pipe is not None else denoiser
    if BlockAdapterRegister.is_supported(target):
        return target
    factory = _factory(BlockAdapterRegister, target) or _factory(BlockAdapterRegister, denoiser)
    if factory is None:
        what = f"{type(pipe).__name__} nor its {type(denoiser).__name__}" if pipe is not None else \
            type(denoiser).__name__
        raise ScheduleError(f"runtime.cache_config: cache-dit {library_version('cache-dit')} has no BlockAdapter for "
                            f"{what}; see cache_dit.supported_pipelines()")
    return factory(pipe if pipe is not None else FakeDiffusionPipeline(denoiser))


class Snapshot:
    """Attribute names, instance ``forward`` and child order of every module of ``denoiser`` and of ``pipe``'s
    instance and class, to put back after cache-dit's ``disable_cache`` (see the module docstring)."""

    def __init__(self, denoiser: torch.nn.Module, pipe: Any | None) -> None:
        self.modules = [(m, set(m.__dict__), m.__dict__.get("forward", _MISSING), list(m._modules))
                        for m in denoiser.modules()]
        self.pipe = pipe
        self.pipe_keys = set(vars(pipe)) if pipe is not None else set()
        self.call = type(pipe).__dict__.get("__call__", _MISSING) if pipe is not None else _MISSING

    def restore(self) -> None:
        """Put every recorded module and the pipeline back as recorded."""
        for m, keys, forward, order in self.modules:
            for key in set(m.__dict__) - keys - _KEEP:
                del m.__dict__[key]
            if forward is not _MISSING:
                m.__dict__["forward"] = forward
            children = m._modules
            moved = [(k, children.pop(k)) for k in order if k in children]
            rest = list(children.items())
            children.clear()
            children.update(moved + rest)
        if self.pipe is not None:
            for key in set(vars(self.pipe)) - self.pipe_keys:
                delattr(self.pipe, key)
            cls = type(self.pipe)
            if self.call is _MISSING and "__call__" in cls.__dict__:
                delattr(cls, "__call__")
            elif self.call is not _MISSING and cls.__dict__.get("__call__") is not self.call:
                cls.__call__ = self.call


def enable(pipe: Any | None, denoiser: torch.nn.Module, configs: dict[str, Any]) -> tuple[Any, Snapshot]:
    """``cache_dit.enable_cache`` on what :func:`adapter_target` picks, with ``configs`` (``cache_config``,
    ``calibrator_config``); returns what was enabled and the snapshot to restore on removal."""
    cache_dit = import_library("cache-dit", "runtime.cache_config")
    snapshot = Snapshot(denoiser, pipe)
    target = adapter_target(pipe, denoiser)
    try:
        with _quiet():
            cache_dit.enable_cache(target, **configs)
    except BaseException:
        with contextlib.suppress(Exception), _quiet():
            cache_dit.disable_cache(target)
        snapshot.restore()
        raise
    return target, snapshot


def disable(target: Any, snapshot: Snapshot) -> None:
    """``cache_dit.disable_cache`` and the snapshot put back."""
    cache_dit = import_library("cache-dit", "runtime.cache_config")
    try:
        with _quiet():
            cache_dit.disable_cache(target)
    finally:
        snapshot.restore()
