"""``cachesearch validate``: check a schedule file strictly and against a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..schedule._ir import FORMATS
from ._common import check_device, fail, quiet_libraries, user_errors

__all__ = ["register"]

_VERSIONS = ", ".join(f"@{f.rsplit('@', 1)[1]}" for f in FORMATS)  # "@1, @2, @3, @4": every version read


def validate(
    files: Annotated[list[str], typer.Argument(
        metavar="FILE_OR_DIR...",
        help=f"Schedule files (cachesearch/schedule {_VERSIONS}), index files (a run's schedules/index.yaml: "
             "every schedule it lists must exist and load) or folders (their index.yaml and every schedule in them).")],
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

    console = Console()
    with user_errors():
        if model is not None:
            check_device(device)
        schedules = _load_all(console, files)
        if model is None:
            return
        from ..models._loaders import load_model

        quiet_libraries()
        loaded = load_model(model, device=device)
        for file, schedule in schedules:
            _check_against(console, file, schedule, model, loaded, run)


def _is_index(path: Path) -> bool:
    """True for a front index file (``format: cachesearch/index@1``); reads it with the schedule files' bounds."""
    from collections.abc import Mapping

    from ..schedule._front import INDEX_FORMAT
    from ..schedule._yaml import read_yaml_file

    data = read_yaml_file(path, what="schedule or index file")
    return isinstance(data, Mapping) and data.get("format") == INDEX_FORMAT


def _load_all(console: Any, args: list[str]) -> list[tuple[str, Any]]:
    """Every schedule named by ``args`` (files, index files, folders), each loaded once, in order."""
    from ..schedule import ScheduleError, load_front, load_schedule

    loaded: dict[Path, tuple[str, Any]] = {}

    def one(file: Path) -> None:
        key = file.resolve()
        if key in loaded:
            return
        schedule = load_schedule(file)
        what = (f"runtime {schedule.runtime.library} {schedule.runtime.method}" if schedule.runtime is not None
                else f"{len(schedule.blocks)} block(s)")
        console.print(f"format ok: {file} — schedule {schedule.name!r}, {what}, "
                      f"{schedule.num_steps} steps, made for {schedule.model.source} ({schedule.model.cls})")
        loaded[key] = (str(file), schedule)

    def index(path: Path) -> set[Path]:
        front = load_front(path)
        listed = set()
        for entry in front.entries:
            file = front.path.parent / entry.file
            if not file.is_file():
                raise ScheduleError(f"{front.path}: lists {entry.file}, which is not in {front.path.parent}")
            one(file)
            listed.add(file.resolve())
        console.print(f"index ok: {front.path} — {len(front.entries)} schedule(s), every listed file present "
                      f"and valid")
        return listed

    for arg in args:
        path = Path(arg)
        if path.is_dir():
            if not (path / "index.yaml").is_file() and not any(path.glob("*.yaml")):
                raise ScheduleError(f"{path}: a folder with no index.yaml and no schedule files")
            listed = index(path / "index.yaml") if (path / "index.yaml").is_file() else set()
            for file in sorted(path.glob("*.yaml")):
                if file.name != "index.yaml" and file.resolve() not in listed:
                    one(file)
        elif path.is_file() and _is_index(path):
            index(path)
        else:
            one(path)
    return list(loaded.values())


def _check_against(console: Any, file: str, schedule: Any, model: str, loaded: Any, run: bool) -> None:
    import inspect

    import diffusers
    import torch

    from ..models import block_space
    from ..runtime import fingerprint_of
    from ..schedule import ScheduleError, fingerprint_mismatch
    from .generate import _video_kwargs

    problem = fingerprint_mismatch(schedule, type(loaded.denoiser).__name__, fingerprint_of(loaded.pipe),
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
    if schedule.runtime is not None:
        console.print(f"model ok: {file} matches {model}'s fingerprint; {schedule.runtime.library}'s "
                      f"{schedule.runtime.method} enables on it with the installed version and comes off cleanly")
    else:
        console.print(f"model ok: {file} matches {model}'s fingerprint; hooks install on {len(schedule.blocks)} "
                      f"block(s) and come off cleanly")
    if run:
        with schedule.applied(loaded.pipe):
            out = loaded.pipe(prompt=["a red circle on a blue background"],
                              generator=torch.Generator("cpu").manual_seed(0), **schedule.pipeline_kwargs(),
                              **{**_video_kwargs(loaded), "output_type": "pt"})
            image = out.frames if hasattr(out, "frames") else out.images
        if not bool(torch.isfinite(image).all()):
            raise fail(f"{file}: the schedule produced NaN/inf on {model}")
        console.print(f"run ok: one image generated with the schedule ({tuple(image.shape)}), finite")


def register(app: typer.Typer) -> None:
    """Add ``validate`` to the CLI."""
    app.command("validate")(validate)
