"""Apply a runtime schedule: the library's own ``enable_cache`` on apply, its ``disable_cache`` on ``remove()``.

What cachesearch adds around the library's cache (the static applier's hot path is not involved):

- the fingerprint check (``force=True`` overrides with a warning), a warning when the pipeline's scheduler or the
  library's version differs from the schedule's, and a refusal when the sampler is set up for another step count;
- a cold cache for every image: with a pipeline, the library's state is reset whenever the pipeline calls
  ``scheduler.set_timesteps`` (diffusers also resets after each call, cache-dit before each; resetting at the start
  also covers a call that raised half-way). A bare denoiser must be called once per step; every
  ``num_inference_steps`` calls its state is reset (diffusers), or cache-dit refreshes its context itself;
- with diffusers on a bare denoiser, each call runs inside ``denoiser.cache_context("cond")`` (its stateful hooks
  need a context) unless the caller entered one;
- exact removal: afterwards the denoiser computes what it computed before (see :mod:`._cache_dit`).
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import torch

from ..adapters import denoiser_of
from ..schedule import Schedule, ScheduleError, fingerprint_mismatch
from ..schedule._runtime import LIBRARIES, RuntimeCache
from . import _cache_dit
from ._experts import fingerprint_of, uncompiled
from ._libraries import build_config, import_library, library_version
from ._patches import Patches

__all__ = ["AppliedRuntime", "apply_runtime", "runtime_problem"]

_HANDLE_ATTR = "_cachesearch_applied"


def runtime_problem(library: str, target: Any) -> str | None:
    """Why ``library``'s caches cannot be enabled on ``target`` (a pipeline or bare denoiser), or ``None``."""
    lib = LIBRARIES[library]
    try:
        import_library(library)
    except ScheduleError:
        return f"{lib.name} is not installed ({lib.install_hint()})"
    called = denoiser_of(target)
    denoiser = uncompiled(called)
    pipe = target if target is not called else None
    if library == "diffusers":
        if not callable(getattr(denoiser, "enable_cache", None)):
            return (f"{type(denoiser).__name__} has no enable_cache (diffusers' CacheMixin); diffusers' cache hooks "
                    f"run on the transformers that have it (FLUX, Wan, HunyuanVideo, ...)")
        return None
    try:
        _cache_dit.adapter_target(pipe, denoiser)
    except ScheduleError as e:
        return str(e).removeprefix("runtime.cache_config: ")
    return None


class AppliedRuntime:
    """Handle of a runtime schedule enabled on a pipeline or bare denoiser; ``remove()`` disables it exactly.

    Use as a context manager (``with sched.applied(pipe): ...``) or call :meth:`remove` yourself.
    """

    def __init__(self, schedule: Schedule, target: Any, *, force: bool = False,
                 compile: bool | str | dict[str, Any] = False, cfg: bool | None = None) -> None:
        if compile:
            raise ScheduleError("compile: a runtime schedule is enabled by its library's own hooks; compile the "
                                "denoiser yourself (torch.compile) after applying it")
        runtime = schedule.runtime
        if not isinstance(runtime, RuntimeCache):
            raise ScheduleError(f"schedule {schedule.name!r} is not a runtime schedule")
        self.schedule = schedule
        self.runtime = runtime
        called = denoiser_of(target)
        self.denoiser = uncompiled(called)
        self.pipe = target if target is not called else None
        self._called = called
        self._target = target
        self._removed = False
        if getattr(self.denoiser, _HANDLE_ATTR, None) is not None:
            raise ScheduleError("a schedule is already applied to this denoiser; remove() it first")
        self._check(force)
        self._patches = Patches(describe=lambda obj: type(obj).__name__)
        self._hooks: list[Any] = []
        self._calls = 0
        self._context: Any = None
        self._entered: list[tuple[tuple, dict]] = []  # the caller's own cache_context(...) arguments, innermost last
        self._enabled: Any = None
        self._snapshot: _cache_dit.Snapshot | None = None
        configs = {arg: build_config(runtime.library, arg, cfg_, f"runtime.{arg}", timestep=self._timestep())
                   for arg, cfg_ in runtime.configs.items()}
        try:
            self._enable(configs)
            if self.pipe is not None and getattr(self.pipe, "scheduler", None) is not None:
                self._patches.patch(self.pipe.scheduler, "set_timesteps", self._on_set_timesteps)
            else:
                self._hooks.append(called.register_forward_pre_hook(self._on_bare_call))
                if runtime.library == "diffusers":
                    self._patches.patch(self.denoiser, "cache_context", self._counting_context)
                    self._hooks.append(called.register_forward_hook(self._after_bare_call, always_call=True))
            setattr(self.denoiser, _HANDLE_ATTR, self)
        except BaseException:
            self.remove()
            raise

    # -- checks ------------------------------------------------------------------------------------------
    def _check(self, force: bool) -> None:
        msg = fingerprint_mismatch(self.schedule, type(self.denoiser).__name__, fingerprint_of(self._target))
        if msg is not None:
            if not force:
                raise ScheduleError(msg + "; pass force=True to apply it anyway")
            warnings.warn(msg + "; applying anyway because force=True", stacklevel=4)
        scheduler = getattr(self.pipe, "scheduler", None)
        expected = self.schedule.sampler.scheduler
        if scheduler is not None and expected != "unknown" and type(scheduler).__name__ != expected:
            warnings.warn(f"schedule {self.schedule.name!r} was tuned for {expected}, the pipeline uses "
                          f"{type(scheduler).__name__}; quality may differ", stacklevel=4)
        installed = library_version(self.runtime.library)
        if self.runtime.version is not None and installed is not None and installed != self.runtime.version:
            warnings.warn(f"schedule {self.schedule.name!r} was made with {self.runtime.library} "
                          f"{self.runtime.version}; {installed} is installed: its cache may decide differently",
                          stacklevel=4)

    def _timestep(self) -> Any:
        pipe = self.pipe
        if pipe is None:
            return None
        if not hasattr(type(pipe), "current_timestep") and not hasattr(pipe, "current_timestep"):
            return None
        return lambda: pipe.current_timestep

    # -- enable / disable ---------------------------------------------------------------------------------
    def _enable(self, configs: dict[str, Any]) -> None:
        if self.runtime.library == "diffusers":
            problem = runtime_problem("diffusers", self.pipe if self.pipe is not None else self.denoiser)
            if problem is not None:
                raise ScheduleError(f"runtime.config: {problem}")
            if self.denoiser.is_cache_enabled:
                raise ScheduleError(f"a diffusers cache ({type(self.denoiser._cache_config).__name__}) is already "
                                    f"enabled on this denoiser; disable_cache() it first")
            self.denoiser.enable_cache(configs["config"])
            self._enabled = self.denoiser
        else:
            self._enabled, self._snapshot = _cache_dit.enable(self.pipe, self.denoiser, configs)

    def remove(self) -> None:
        """Disable the library's cache and restore the denoiser (and pipeline) exactly; safe to call twice."""
        if self._removed:
            return
        self._removed = True
        for h in self._hooks:
            h.remove()
        self._patches.restore()
        try:
            if self._enabled is not None and self.runtime.library == "diffusers":
                self.denoiser._reset_stateful_cache()
                self.denoiser.disable_cache()
            elif self._enabled is not None:
                _cache_dit.disable(self._enabled, self._snapshot)
        finally:
            if getattr(self.denoiser, _HANDLE_ATTR, None) is self:
                delattr(self.denoiser, _HANDLE_ATTR)

    def __enter__(self) -> AppliedRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    # -- a cold cache per image -----------------------------------------------------------------------------
    def reset(self) -> None:
        """Start a new sampling loop with a cold cache (only needed for a bare denoiser stopped part-way)."""
        self._calls = 0
        if self.runtime.library == "diffusers":
            self.denoiser._reset_stateful_cache()  # also clears the current context: put the caller's back
            if self._entered:
                from diffusers.hooks.hooks import CacheContext, _set_cache_context

                args, kwargs = self._entered[-1]
                _set_cache_context(self.denoiser, CacheContext(*args, **kwargs))
        elif self.pipe is None:
            self._refresh_cache_dit()

    def _refresh_cache_dit(self) -> None:
        """cache-dit's transformer-only contexts, recreated from their own init arguments."""
        manager = getattr(self.denoiser, "_context_manager", None)
        for name in getattr(self.denoiser, "_context_names", None) or []:
            context = manager.get_context(name)
            manager.reset_context(name, *context._init_args, **context._init_kwargs)

    def _on_set_timesteps(self, original: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            steps = int(self.pipe.scheduler.num_inference_steps)
            if steps != self.schedule.num_steps:
                raise ScheduleError(
                    f"schedule {self.schedule.name!r} has {self.schedule.num_steps} steps but the sampler was set up "
                    f"for {steps}; call the pipeline with **schedule.pipeline_kwargs() "
                    f"({self.schedule.pipeline_kwargs()})")
            if self.runtime.library == "diffusers":
                self.denoiser._reset_stateful_cache()
            return out

        return wrapper

    @torch.compiler.disable(recursive=True)
    def _on_bare_call(self, module: torch.nn.Module, args: tuple) -> None:
        if self._calls == self.schedule.num_steps:
            self.reset()
        self._calls += 1
        if self.runtime.library == "diffusers" and not self._entered:
            self._context = self.denoiser.cache_context("cond")
            self._context.__enter__()

    @torch.compiler.disable(recursive=True)
    def _after_bare_call(self, module: torch.nn.Module, args: tuple, output: Any) -> None:
        if self._context is not None:
            context, self._context = self._context, None
            context.__exit__(None, None, None)

    def _counting_context(self, original: Any) -> Any:
        """``denoiser.cache_context`` that records that the caller entered a context of their own."""

        @contextlib.contextmanager
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with original(*args, **kwargs):
                self._entered.append((args, kwargs))
                try:
                    yield
                finally:
                    self._entered.pop()

        return wrapper


def apply_runtime(schedule: Schedule, target: Any, **options: Any) -> AppliedRuntime:
    """Enable a runtime schedule on a pipeline or bare denoiser (see :class:`AppliedRuntime`)."""
    return AppliedRuntime(schedule, target, **options)
