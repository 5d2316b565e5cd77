"""``cachesearch generate``: one image, optionally with a schedule.

(The embedded models' trainers are not installed: they live in the repository's ``training/`` folder,
``python -m training.shapes --out DIR`` from a clone; see training/README.md.)"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from ._common import check_device, check_writable_folder, fail, set_threads, user_errors


def generate(
    prompt: str = typer.Option(..., "--prompt", "-p", help="Text prompt."),
    model: str | None = typer.Option(
        None, "--model", "-m",
        help="embedded | arch:sd15 | arch:sdxl | folder | hub id (default: the schedule's model.source, else "
        "embedded).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the initial noise."),
    out: Path = typer.Option(Path("image.png"), "--out", "-o", help="Output PNG (refused if it exists)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out if it exists."),
    schedule: Path | None = typer.Option(None, "--schedule", "-s", help="Apply this schedule YAML."),
    reference: bool = typer.Option(
        False, "--reference",
        help="With --schedule: generate the schedule's recorded reference (full compute at its steps and guidance) "
        "instead, to compare side by side.",
    ),
    steps: int | None = typer.Option(None, "--steps", help="Sampler steps (default: the schedule's, else model's)."),
    guidance_scale: float | None = typer.Option(None, "--guidance-scale", help="CFG scale (default: model's)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N."),
    threads: int = typer.Option(None, "--threads", help="torch CPU threads in this process. Default 1 on CPU "
                                                        "(shared machines slow down with more)."),
    force: bool = typer.Option(False, "--force", help="Apply a schedule made for another architecture anyway "
                                                      "(a warning says so)."),
) -> None:
    """Generate one image; with --schedule the caching schedule is applied (two lines of Python, see README)."""
    from .. import load_schedule
    from .evaluate import default_model

    with user_errors():
        # Everything that can be checked without the model is checked first.
        check_device(device)
        if out.is_dir():
            raise fail(f"--out {out}: is a folder; give the PNG file to write")
        if out.exists() and not overwrite:
            raise fail(f"--out {out}: exists; pass --overwrite to replace it")
        check_writable_folder(out.parent, "--out")
        sched = load_schedule(schedule) if schedule is not None else None
        if reference and sched is None:
            raise fail("--reference needs --schedule")
        if reference and sched.reference is None:
            raise fail(f"--reference: {schedule} records no reference run (format @1); pass --steps instead")
        if sched is not None and not reference:
            _check_schedule_options(sched, steps, guidance_scale)
        spec = model or (default_model(sched) if sched is not None else None) or "embedded"
        set_threads(threads, device)
        import torch

        from ..embedded import embedded_package
        from ..models import load_model

        loaded = load_model(spec, device=device)
        pipe = loaded.pipe
        pipe.set_progress_bar_config(disable=True)
        kwargs: dict = {}
        package = embedded_package(loaded.source)
        if package is not None:
            kwargs = {"num_inference_steps": package.DEFAULT_STEPS, "guidance_scale": package.DEFAULT_GUIDANCE_SCALE}
        if sched is not None and reference:
            kwargs["num_inference_steps"] = sched.reference.num_inference_steps
            if sched.reference.guidance_scale is not None:
                kwargs["guidance_scale"] = sched.reference.guidance_scale
        elif sched is not None:
            kwargs.update(sched.pipeline_kwargs())
        if steps is not None:
            kwargs.pop("timesteps", None)
            kwargs["num_inference_steps"] = steps
        if guidance_scale is not None:
            kwargs["guidance_scale"] = guidance_scale
        kwargs = {**_video_kwargs(loaded), **kwargs}
        generator = torch.Generator(device="cpu").manual_seed(seed)
        start = time.perf_counter()
        if sched is not None and not reference:
            with _applied(sched, pipe, force):
                frames = _first(pipe(prompt, generator=generator, **kwargs))
        else:
            frames = _first(pipe(prompt, generator=generator, **kwargs))
        elapsed = time.perf_counter() - start
    image = frames[0]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if len(frames) > 1:  # a video: an animated PNG (or GIF, by the file's suffix), 8 frames a second
            image.save(out, save_all=True, append_images=frames[1:], duration=125, loop=0)
        else:
            image.save(out)
    except OSError as e:
        raise fail(f"--out {out}: cannot write it: {e.strerror or e}") from None
    what = ""
    if sched is not None:
        what = f", the reference of {sched.name!r}" if reference else f" with schedule {sched.name!r}"
    clip = f", {len(frames)} frames" if len(frames) > 1 else ""
    typer.echo(f"wrote {out} ({image.width}x{image.height}{clip}, {elapsed:.2f} s{what})")
    if loaded.random_weights:
        typer.secho("note: random-weight architecture preset: the image is noise by design", fg="yellow")


def _video_kwargs(loaded: Any) -> dict[str, Any]:
    """A video model renders at its adapter's default size and clip length (a tiny preset's are not its pipeline
    class's) and as PIL frames; nothing for image models."""
    from ..adapters import VideoAdapter, adapter_for

    adapter = adapter_for(loaded.denoiser)
    if not isinstance(adapter, VideoAdapter):
        return {}
    height, width = adapter.default_size(loaded.pipe)
    return {"height": height, "width": width, "num_frames": adapter.num_frames(loaded.pipe), "output_type": "pil",
            **adapter.call_kwargs(loaded.pipe)}


def _first(output: Any) -> list[Any]:
    """The PIL frames of the first sample of a pipeline output: one image, or a video's frames."""
    frames = getattr(output, "frames", None)
    return list(frames[0]) if frames is not None else [output.images[0]]


def _check_schedule_options(sched: Any, steps: int | None, guidance_scale: float | None) -> None:
    """Options that contradict the schedule, refused before the model loads (in CLI terms)."""
    if steps is not None and steps != sched.num_steps:
        raise fail(f"--steps {steps}: schedule {sched.name!r} runs {sched.num_steps} steps; leave --steps out "
                   f"(generate follows the schedule), or add --reference to generate its full-compute reference")
    per_branch = next((bm.block for bm in sched.blocks if not bm.shared), None)
    if per_branch is not None and guidance_scale is not None and guidance_scale <= 1:
        raise fail(f"--guidance-scale {guidance_scale:g}: schedule {sched.name!r} has per-branch (cond/uncond) masks "
                   f"(blocks[\"{per_branch}\"]), which need classifier-free guidance; leave --guidance-scale out "
                   f"(the schedule's {sched.sampler.guidance_scale} is used)")


@contextlib.contextmanager
def _applied(sched: Any, pipe: Any, force: bool) -> Iterator[None]:
    """``sched`` applied to ``pipe``; the runtime's Python advice said as the CLI's (``--force``), its warnings
    as one line each."""
    from ..schedule import ScheduleError

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            handle = sched.apply(pipe, force=force)
        except ScheduleError as e:
            raise fail(str(e).replace("pass force=True", "pass --force")) from None
    for w in caught:
        typer.secho(f"warning: {str(w.message).replace('because force=True', 'because of --force')}",
                    fg="yellow", err=True)
    try:
        yield
    finally:
        handle.remove()


def register(app: typer.Typer) -> None:
    """Add ``generate``."""
    app.command("generate")(generate)
