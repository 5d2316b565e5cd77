"""``cachesearch validate``: check a schedule file strictly and against a model."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ._common import fail, quiet_libraries, user_errors

__all__ = ["register"]


def validate(
    files: Annotated[list[str], typer.Argument(help="One or more cachesearch/schedule@1 YAML files.")],
    model: str = typer.Option(None, "--model", "-m", help="Model spec to check against (embedded, a pipeline "
                                                           "folder, a cached hub id, arch:sd15). Without it only "
                                                           "the file format is checked."),
    device: str = typer.Option("cpu", "--device", help="Device to load the model on."),
    run: bool = typer.Option(False, "--run", help="Also generate one image with each schedule applied and check "
                                                  "that it is finite."),
) -> None:
    """Validate FILE(s): strict format checks, then (with --model) architecture fingerprint, block names, sampler
    timesteps, and a dry apply/remove of the hooks on the model's pipeline. Exit code 2 on the first problem."""
    from rich.console import Console

    from ..schedule import load_schedule

    console = Console()
    with user_errors():
        schedules = []
        for file in files:
            schedule = load_schedule(file)
            console.print(f"format ok: {file} — schedule {schedule.name!r}, {len(schedule.blocks)} block(s), "
                          f"{schedule.num_steps} steps, made for {schedule.model.source} ({schedule.model.cls})")
            schedules.append((file, schedule))
        if model is None:
            return
        from ..models._loaders import load_model

        quiet_libraries()
        loaded = load_model(model, device=device)
        for file, schedule in schedules:
            _check_against(console, file, schedule, model, loaded, run)


def _check_against(console: Any, file: str, schedule: Any, model: str, loaded: Any, run: bool) -> None:
    import inspect

    import diffusers
    import torch

    from ..models import block_space
    from ..runtime import fingerprint_module
    from ..schedule import ScheduleError, fingerprint_mismatch

    problem = fingerprint_mismatch(schedule, type(loaded.denoiser).__name__, fingerprint_module(loaded.denoiser),
                                   where=f"model {model!r}")
    if problem is not None:
        raise fail(f"{file}: {problem}")
    space = block_space(loaded.denoiser)
    for bm in schedule.blocks:
        try:
            space.get(bm.block)
        except ScheduleError as e:
            raise fail(f'{file}: blocks["{bm.block}"]: {e}') from None
    scheduler = loaded.pipe.scheduler
    if schedule.sampler.scheduler not in (type(scheduler).__name__, "unknown"):
        console.print(f"[yellow]note[/]: {file} was made for {schedule.sampler.scheduler}; {model} uses "
                      f"{type(scheduler).__name__} (set pipe.scheduler accordingly)")
    if schedule.sampler.timesteps is not None:
        wanted = getattr(diffusers, schedule.sampler.scheduler, type(scheduler))
        if "timesteps" not in inspect.signature(wanted.set_timesteps).parameters:
            raise fail(f"{file}: sampler.timesteps: {wanted.__name__} does not accept explicit timesteps")
    handle = schedule.apply(loaded.pipe)
    handle.remove()
    console.print(f"model ok: {file} matches {model}'s fingerprint; hooks install on {len(schedule.blocks)} "
                  f"block(s) and come off cleanly")
    if run:
        with schedule.applied(loaded.pipe):
            image = loaded.pipe(prompt=["a red circle on a blue background"], output_type="pt",
                                generator=torch.Generator("cpu").manual_seed(0), **schedule.pipeline_kwargs()).images
        if not bool(torch.isfinite(image).all()):
            raise fail(f"{file}: the schedule produced NaN/inf on {model}")
        console.print(f"run ok: one image generated with the schedule ({tuple(image.shape)}), finite")


def register(app: typer.Typer) -> None:
    """Add ``validate`` to the CLI."""
    app.command("validate")(validate)
