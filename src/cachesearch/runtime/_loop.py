"""The sampling loop's landmarks, patched on the instances: where a run starts (``scheduler.set_timesteps``), where
img2img starts it part-way (``set_begin_index`` / ``pipe.get_timesteps``), and which CFG pass runs
(``denoiser.cache_context(name)``, the context manager diffusers' own cache hooks read).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from ._clock import Clock
from ._patches import Patches

__all__ = ["patch_cache_context", "patch_scheduler"]


def patch_scheduler(patches: Patches, scheduler: Any, pipe: Any, *, new_run: Callable[[int, int], None],
                    begin_at: Callable[[int], None], calls_in_loop: Callable[[], int | None]) -> None:
    """Call ``new_run(num_steps, num_calls)`` after every ``set_timesteps`` and ``begin_at(call)`` when the pipeline
    announces that it runs only the tail of the loop."""

    def set_timesteps(original: Callable) -> Callable:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            new_run(int(scheduler.num_inference_steps), len(scheduler.timesteps))
            return out

        return wrapper

    patches.patch(scheduler, "set_timesteps", set_timesteps)
    # img2img / inpaint (strength < 1) run only the tail of the timesteps: pipelines announce where it starts
    # through scheduler.set_begin_index(call index) where the scheduler has it, and return the tail from
    # pipe.get_timesteps(...) everywhere (its length is a shape: no device sync).
    if hasattr(scheduler, "set_begin_index"):

        def set_begin_index(original: Callable) -> Callable:
            def wrapper(begin_index: int = 0, *args: Any, **kwargs: Any) -> Any:
                out = original(begin_index, *args, **kwargs)
                begin_at(int(begin_index))
                return out

            return wrapper

        patches.patch(scheduler, "set_begin_index", set_begin_index)
    if callable(getattr(pipe, "get_timesteps", None)):

        def get_timesteps(original: Callable) -> Callable:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                out = original(*args, **kwargs)
                tail = out[0] if isinstance(out, tuple) else out
                calls = calls_in_loop()
                if calls is not None and hasattr(tail, "__len__"):
                    begin_at(calls - len(tail))
                return out

            return wrapper

        patches.patch(pipe, "get_timesteps", get_timesteps)


def patch_cache_context(patches: Patches, denoiser: Any, clock: Clock) -> None:
    """Tell ``clock`` which cache context (CFG pass) the denoiser's calls run in, while still entering diffusers'
    own context (its hooks and any cache the user enabled keep working). Nothing happens per block or per call
    beyond what the pipeline's ``with`` already costs; denoisers without ``cache_context`` are left alone."""
    if not callable(getattr(denoiser, "cache_context", None)):
        return

    def make(original: Callable) -> Callable:
        @contextlib.contextmanager
        def cache_context(name: str, *args: Any, **kwargs: Any) -> Iterator[None]:
            previous = clock.context
            clock.context = name
            try:
                with original(name, *args, **kwargs):
                    yield
            finally:
                clock.context = previous

        return cache_context

    patches.patch(denoiser, "cache_context", make)
