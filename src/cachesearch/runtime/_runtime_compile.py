"""Compile a runtime policy for a pipeline: every config complete for the installed library and checked."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..adapters import denoiser_of
from ..schedule import RuntimePolicy, ScheduleError
from ..schedule._runtime import RuntimeCache
from ._libraries import config_classes, full_config, import_library, library_version
from ._runtime_applied import runtime_problem

__all__ = ["resolve_runtime"]


def resolve_runtime(policy: RuntimePolicy, target: Any, num_steps: int) -> RuntimeCache:
    """The :class:`RuntimeCache` a runtime ``policy`` enables on ``target`` (a pipeline or bare denoiser) for
    ``num_steps`` sampler steps: each config with every field of the installed library's class (what the file
    records), ``num_inference_steps`` set to ``num_steps`` where the class has it.

    Raises:
        ScheduleError: the library is missing (naming the extra to install), the method or a field is unknown to
            the installed version, a value is refused, ``num_inference_steps`` is set to another step count, or the
            library cannot enable its cache on ``target`` (naming why).
    """
    name = policy.library
    import_library(name, "policy")
    configs = {}
    for arg, cfg in policy.library_configs().items():
        path = f"policy.{arg}"
        cls = config_classes(name, arg).get(cfg.method)
        overrides: dict[str, Any] = {}
        if cls is not None and "num_inference_steps" in {f.name for f in dataclasses.fields(cls)}:
            given = cfg.fields.get("num_inference_steps")
            if given is not None and given != num_steps:
                raise ScheduleError(f"{path}.num_inference_steps: {given}, but the schedule has {num_steps} steps; "
                                    f"leave it unset (compile_schedule sets it to the schedule's steps)")
            overrides["num_inference_steps"] = num_steps
        configs[arg] = full_config(name, arg, cfg, path, overrides)
    problem = runtime_problem(name, target)
    if problem is not None:
        raise ScheduleError(f"policy: {problem}")
    if denoiser_of(target) is target and any(
            v == "pipeline.current_timestep" for c in configs.values() for v in c.fields.values()):
        raise ScheduleError("policy: this config reads the pipeline's current timestep (current_timestep_callback); "
                            "compile it for the pipeline, not its bare denoiser")
    return RuntimeCache(library=name, version=library_version(name), configs=configs)
