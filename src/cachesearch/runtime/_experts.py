"""The denoisers a pipeline calls: one, or two experts (Wan 2.2 A14B: ``transformer`` runs the high-noise steps,
``transformer_2`` the rest, switched at the pipeline's ``boundary_ratio``), and their joint fingerprint.

diffusers names a second expert ``<attribute>_2`` next to the first; a pipeline whose ``transformer_2`` is set calls
one of the two at every step. A schedule for such a pipeline covers both: its block names are the experts' shared
block paths, and each step's row goes to the expert that runs that step (see :mod:`._clock`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..adapters import adapter_for, adapters, denoiser_of
from ..schedule import ScheduleError, architecture_fingerprint
from ._steps import steps_of_calls

__all__ = ["expert_starts", "experts_of", "fingerprint_module", "fingerprint_of", "uncompiled"]


def uncompiled(module: torch.nn.Module) -> torch.nn.Module:
    """The module inside a ``torch.compile(module)`` wrapper (``OptimizedModule``), else ``module``."""
    inner = getattr(module, "_orig_mod", None)
    return inner if isinstance(inner, torch.nn.Module) and type(module).__name__ == "OptimizedModule" else module


def experts_of(target: Any) -> list[tuple[str | None, torch.nn.Module]]:
    """``(pipeline attribute, module the pipeline calls)`` of each denoiser of ``target``, first expert first.

    A bare module is its own one denoiser (attribute ``None``); a pipeline has its family's denoiser and, where set,
    a second expert under the same attribute name with ``_2`` appended.
    """
    called = denoiser_of(target)
    if called is target:
        return [(None, called)]
    attr = next((a.pipeline_attribute for a in adapters() if getattr(target, a.pipeline_attribute, None) is called),
                None)
    out: list[tuple[str | None, torch.nn.Module]] = [(attr, called)]
    second = getattr(target, f"{attr}_2", None) if attr is not None else None
    if isinstance(second, torch.nn.Module) and uncompiled(second) is not uncompiled(called):
        out.append((f"{attr}_2", second))
    return out


def fingerprint_module(module: torch.nn.Module) -> str:
    """Architecture fingerprint of a denoiser (class, config, parameter names and shapes)."""
    config = dict(getattr(module, "config", {}) or {})
    params = ((n, tuple(p.shape)) for n, p in module.named_parameters())
    return architecture_fingerprint(type(module).__name__, config, params)


def fingerprint_of(target: Any) -> str:
    """Architecture fingerprint of what a schedule applied to ``target`` meets: its denoiser's, or for a pipeline with
    two experts one fingerprint over both (each expert's config and parameters under its attribute), so that a
    schedule made for one expert alone is told apart from one that covers both."""
    experts = [(a, uncompiled(m)) for a, m in experts_of(target)]
    if len(experts) == 1:
        return fingerprint_module(experts[0][1])
    config = {"experts": {a: {k: v for k, v in dict(getattr(m, "config", {}) or {}).items() if not k.startswith("_")}
                          for a, m in experts}}  # provenance keys (_name_or_path, ...) are not architecture
    params = ((f"{a}.{n}", tuple(p.shape)) for a, m in experts for n, p in m.named_parameters())
    return architecture_fingerprint(type(experts[0][1]).__name__, config, params)


def expert_starts(target: Any, num_steps: int, timesteps: Sequence[int] | None = None) -> tuple[int, ...]:
    """The steps (after step 0) at which another expert takes over in a pipeline with two experts, as its family's
    adapter computes them from the sampler offline; ``()`` for one denoiser or when the adapter cannot tell. Such a
    step recomputes every block, as step 0 does: nothing of the expert that takes over is stored yet."""
    experts = experts_of(target)
    if len(experts) < 2:
        return ()
    try:
        adapter = adapter_for(uncompiled(experts[0][1]))
    except ScheduleError:
        return ()
    per_call = getattr(adapter, "expert_steps", lambda *a, **k: None)(target, num_steps, timesteps)
    if per_call is None:
        return ()
    step_of_call = steps_of_calls(target.scheduler, num_steps, len(per_call))
    return tuple(sorted({step_of_call[c] for c in range(1, len(per_call)) if per_call[c] != per_call[c - 1]}))
