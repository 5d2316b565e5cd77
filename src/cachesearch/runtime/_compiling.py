"""``apply(..., compile=...)``: regional compilation of the hooked blocks, or the whole denoiser compiled once
per distinct step pattern, each pattern on a code object of its own (so dynamo never recompiles)."""

from __future__ import annotations

import types
import warnings
from collections.abc import Callable, Hashable
from typing import Any

import torch

from ..schedule import ScheduleError

__all__ = ["compile_scope", "pattern_compiled_forward", "warn_if_too_many_patterns"]


def compile_scope(compile: bool | str | dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """``(scope, torch.compile options)`` of ``apply(..., compile=...)``: ``False`` → no compile; ``True`` or a
    dict → the hooked blocks (regional); ``"denoiser"`` or ``{"scope": "denoiser", ...}`` → the whole denoiser."""
    if compile is False or compile is None:
        return None, {}
    if compile is True:
        return "blocks", {}
    if compile in ("blocks", "denoiser"):
        return str(compile), {}
    if isinstance(compile, dict):
        options = dict(compile)
        scope = options.pop("scope", "blocks")
        if scope not in ("blocks", "denoiser"):
            raise ScheduleError(f"compile: scope must be 'blocks' or 'denoiser', got {scope!r}")
        return scope, options
    raise ScheduleError(
        f"compile: expected True, 'blocks', 'denoiser' or a dict of torch.compile options, got {compile!r}"
    )


def pattern_compiled_forward(
    module: torch.nn.Module, key: Callable[[], Hashable], options: dict[str, Any]
) -> tuple[Callable[[Callable], Callable], dict[Hashable, Callable]]:
    """A ``forward`` factory (for a patch of ``module.forward``) that compiles the whole module once per
    distinct ``key()`` (the current step's action row), and the dict of compiled variants.

    Dynamo caches compiled graphs per code object and guards on what the block wrappers read (the action row),
    so one compiled ``forward`` would recompile whenever the pattern changes. Each pattern gets its own copy of
    the forward's code object instead (same bytecode, own cache), chosen outside dynamo: every variant compiles
    once, on its first step, and nothing ever recompiles.
    """
    fn = type(module).forward
    variants: dict[Hashable, Callable] = {}
    options = {"fullgraph": True, "dynamic": False, **options}

    def make(original: Callable) -> Callable:
        def forward(*args: Any, **kwargs: Any) -> Any:
            k = key()
            run = variants.get(k)
            if run is None:
                code = fn.__code__.replace(co_name=f"{fn.__code__.co_name}_cachesearch_pattern{len(variants)}")
                variant = types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)
                variant.__kwdefaults__ = fn.__kwdefaults__
                run = variants[k] = torch.compile(types.MethodType(variant, module), **options)
            return run(*args, **kwargs)

        return forward

    return make, variants


def warn_if_too_many_patterns(name: str, patterns: int) -> None:
    """Under a torch.compile'd denoiser, dynamo specialises on each block's action row: one graph per distinct
    row pattern (compiled during the first call, reused after). Warn when that exceeds dynamo's recompile limit
    (``fullgraph=True`` then raises ``FailOnRecompileLimitHit``, otherwise later patterns run eager)."""
    config = torch._dynamo.config
    limit = int(getattr(config, "recompile_limit", getattr(config, "cache_size_limit", 8)))
    if patterns > limit:
        warnings.warn(
            f"schedule {name!r} has {patterns} distinct step patterns, more than "
            f"torch._dynamo.config.recompile_limit ({limit}): a torch.compile'd denoiser compiles one graph per "
            f"pattern; use apply(pipe, compile='denoiser') or compile=True (regional) on an uncompiled denoiser",
            stacklevel=5,
        )
