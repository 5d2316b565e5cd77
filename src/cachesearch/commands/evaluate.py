"""``cachesearch evaluate SCHEDULE.yaml``: score a schedule file against the uncached reference."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._common import CACHE_HELP, check_device, fail, user_errors

if TYPE_CHECKING:
    from rich.console import Console

    from ..evaluate import EvalResult, Evaluator
    from ..schedule import Schedule

__all__ = ["register"]

_LOADABLE_PREFIXES = ("embedded:", "arch:", "path:", "hub:")


def default_model(schedule: Schedule) -> str | None:
    """The model spec a schedule file names in ``model.source``, if the loader understands it."""
    source = schedule.model.source
    return source if source.startswith(_LOADABLE_PREFIXES) else None


@contextlib.contextmanager
def progress_bars(console: Console) -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress display; yields the ``progress(stage, done, total)`` callback of the evaluator."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description:<32}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bars:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bars.add_task(stage, total=total)
            bars.update(tasks[stage], completed=done, total=total)

        yield update


@contextlib.contextmanager
def evaluation_errors(flags: Mapping[str, str] | None = None) -> Iterator[None]:
    """``user_errors(flags)`` plus a clean message when no perceptual metric can be built offline."""
    from ..evaluate import PerceptualMetricUnavailableError

    with user_errors(flags):
        try:
            yield
        except PerceptualMetricUnavailableError as e:
            raise fail(str(e)) from None


def _fmt(value: float | None, spec: str) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return format(value, spec)


def results_tables(evaluator: Evaluator, train: EvalResult, heldout: EvalResult | None, *,
                   counted: bool = False) -> list[Any]:
    """Rich tables: quality on train / held-out, then cost (``counted``: a runtime schedule's executed MACs per
    split, not an analytic ratio)."""
    from rich.table import Table

    quality = Table(title=f"quality of {train.schedule!r} vs full compute", title_justify="left")
    quality.add_column("")
    quality.add_column("train", justify="right")
    quality.add_column("held-out", justify="right")
    results = [train, heldout]
    rows: list[tuple[str, str, str]] = [
        (f"{train.metric} ↓", "quality", ".4f"),
        ("PSNR dB ↑", "psnr", ".2f"),
        ("SSIM ↑", "ssim", ".4f"),
    ]
    if train.accuracy is not None:
        rows.append(("attribute accuracy ↑", "accuracy", ".1%"))
    for label, attr, spec in rows:
        quality.add_row(label, *(_fmt(getattr(r, attr), spec) if r else "-" for r in results))
    summaries = [r.summary(interval=True) if r else None for r in results]
    if any(summaries):
        quality.add_row(f"{train.metric} mean: 95 % interval", *(
            f"{s.ci95[0]:.4f} – {s.ci95[1]:.4f}" if s and s.ci95 else "-" for s in summaries))
        for label, name in (("median", "median"), ("p90", "p90"), ("worst 10 % (CVaR)", "cvar"), ("max", "max")):
            quality.add_row(f"{train.metric} {label} ↓", *(_fmt(s.get(name), ".4f") if s else "-" for s in summaries))
        quality.add_row(f"images over {summaries[0].threshold if summaries[0] else ''}".rstrip(), *(
            f"{round(s.over * s.n)} of {s.n}" if s else "-" for s in summaries))
    quality.add_row("images", *(str(r.n_images) if r else "-" for r in results))

    cost = Table(title="cost", title_justify="left")
    cost.add_column("")
    cost.add_column("value", justify="right")
    if train.latency_ms is not None:
        spread = f" (±{train.latency_spread:.0%} IQR)" if train.latency_spread is not None else ""
        cost.add_row("latency ms", f"{train.latency_ms:.1f}{spread}")
        cost.add_row("full-compute latency ms", _fmt(train.baseline_ms, ".1f"))
        cost.add_row("speedup", _fmt(train.speedup, ".2f") + "×")
        cost.add_row("device", train.device or "-")
    else:
        cost.add_row("latency", "not measured (--latency measured)")
    if counted:  # a runtime cache decides per image: what executed, counted on each split
        cost.add_row("cost ratio ↓ (executed MACs, train)", _fmt(train.cost_ratio, ".3f"))
        cost.add_row("cost ratio ↓ (executed MACs, held-out)", _fmt(heldout.cost_ratio if heldout else None, ".3f"))
    else:
        cost.add_row("analytic cost ratio ↓", _fmt(train.cost_ratio, ".3f"))
    sampler = evaluator.describe()["sampler"]
    cost.add_row(
        "reference",
        f"{sampler['scheduler']}, {sampler['num_inference_steps']} steps, guidance {sampler['guidance_scale']:g}, "
        f"{sampler['width']}x{sampler['height']}",
    )
    return [quality, cost]


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` command to ``app``."""

    @app.command("evaluate")
    def evaluate(
        schedule_file: Annotated[Path, typer.Argument(metavar="SCHEDULE.yaml", help="Schedule file to evaluate.")],
        model: Annotated[
            str | None,
            typer.Option("--model", help="Model spec (default: the schedule's model.source, e.g. embedded:shapes)."),
        ] = None,
        steps: Annotated[
            int | None,
            typer.Option(
                "--steps", help="Reference steps (default: the schedule's recorded reference; without one, the "
                "schedule's steps, or the model's default for step-set schedules)."
            ),
        ] = None,
        n_train: Annotated[int | None, typer.Option(
            "--n-train", help="Images in the train prompt set (default: as many as the schedule was scored on: "
            "its file's record, else its run's run.yaml, else cachesearch run's default).")] = None,
        n_heldout: Annotated[int | None, typer.Option(
            "--n-heldout", help="Images in the held-out prompt set (default: as --n-train says).")] = None,
        device: Annotated[str, typer.Option("--device", help="cpu, cuda or cuda:N.")] = "cpu",
        dtype: Annotated[
            str | None, typer.Option("--dtype", help="float32, float16 or bfloat16 (default: the model's).")
        ] = None,
        latency: Annotated[
            str, typer.Option("--latency", help="measured (time it) or analytic (cost ratio only).")
        ] = "measured",
        repeats: Annotated[int, typer.Option("--repeats", help="Timed repeats per latency measurement.")] = 3,
        prompts: Annotated[
            Path | None, typer.Option("--prompts", help="Prompt file (.txt one a line, or .yaml).")
        ] = None,
        metric: Annotated[str, typer.Option("--metric", help="Preferred perceptual metric.")] = "lpips-alex",
        batch_size: Annotated[int, typer.Option("--batch-size", help="Prompts per pipeline call.")] = 8,
        cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help=CACHE_HELP)] = None,
        json_out: Annotated[Path | None, typer.Option("--json", help="Also write the results as JSON here.")] = None,
    ) -> None:
        """Evaluate SCHEDULE.yaml: quality (train and held-out) against full compute, latency, speedup, cost."""
        from rich.console import Console

        from ..evaluate import EvalConfig, Evaluator
        from ..schedule import load_schedule

        console = Console(stderr=True)
        out = Console()
        with evaluation_errors():
            check_device(device)
            schedule = load_schedule(schedule_file)
            spec = model or default_model(schedule)
            if spec is None:
                raise fail(
                    f"{schedule_file}: model.source is {schedule.model.source!r}, which cannot be loaded; pass --model"
                )
            if n_train is None or n_heldout is None:
                counts = run_image_counts(schedule, schedule_file)
                n_train = counts[0] if n_train is None else n_train
                n_heldout = counts[1] if n_heldout is None else n_heldout
                console.print(f"images: {n_train} train / {n_heldout} held-out ({counts[2]}; --n-train / "
                              f"--n-heldout to change)")
            kind = str(schedule.policy.get("kind", ""))
            ref = schedule.reference
            if steps is None and ref is not None:
                steps = ref.num_inference_steps
                if steps != schedule.num_steps:
                    console.print(f"comparing with the schedule's recorded reference: full compute at {steps} steps "
                                  f"({ref.scheduler}; --steps to change)")
            if steps is None:
                if kind in ("steps", "joint"):
                    steps = _default_steps(spec)
                    console.print(
                        f"[yellow]{schedule.name} runs a subset of steps; comparing with full compute at "
                        f"{steps} steps (--steps to change)[/]"
                    )
                else:
                    steps = schedule.num_steps
            scheduler = None if schedule.sampler.scheduler == "unknown" else schedule.sampler.scheduler
            if ref is not None and ref.scheduler != schedule.sampler.scheduler:
                raise fail(f"{schedule_file}: reference.scheduler {ref.scheduler} differs from sampler.scheduler "
                           f"{schedule.sampler.scheduler}; cachesearch scores a schedule on its own scheduler")
            config = EvalConfig(
                model=spec,
                device=device,
                dtype=dtype,
                scheduler=scheduler,
                num_inference_steps=steps,
                guidance_scale=schedule.sampler.guidance_scale,
                n_train=n_train,
                n_heldout=n_heldout,
                prompts_file=None if prompts is None else str(prompts),
                metric=metric,
                latency=latency,
                latency_repeats=repeats,
                batch_size=batch_size,
                **({} if cache_dir is None else {"cache_dir": str(cache_dir)}),
            )
            with progress_bars(console) as progress:
                evaluator = Evaluator(config, progress=progress)
                train = evaluator.evaluate(schedule, split="train", measure=latency == "measured")
                heldout = evaluator.evaluate(schedule, split="heldout", measure=False) if train.valid else None
        if evaluator.random_weights:
            console.print(f"[yellow]{evaluator.source} has random weights: quality numbers describe nothing real[/]")
        if json_out is not None:
            doc = {
                "schedule": str(schedule_file),
                "evaluator": evaluator.describe(),
                "config": config.to_dict(),
                "train": train.to_dict(json_safe=True),
                "heldout": None if heldout is None else heldout.to_dict(json_safe=True),
            }
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        for result in (train, heldout):
            if result is not None and not result.valid:
                raise fail(f"{schedule.name} is invalid on the {result.split} prompts: {result.reason}", code=1)
        for table in results_tables(evaluator, train, heldout, counted=schedule.runtime is not None):
            out.print(table)


def run_image_counts(schedule: Schedule, schedule_file: Path) -> tuple[int, int, str]:
    """``(train, held-out, where from)``: the image counts ``schedule`` was scored on, so ``evaluate`` reproduces
    the report's numbers — the counts its file records (format @4), else its run's ``run.yaml`` (a file in
    ``<run>/schedules/``), else ``cachesearch run``'s defaults."""
    from ..search.settings import SearchError, default
    from ..search.study import load_settings

    tail = schedule.metrics.tail if schedule.metrics is not None else None
    if tail is not None and tail.train is not None and tail.heldout is not None:
        return tail.train.n, tail.heldout.n, "as recorded in the schedule file"
    run_dir = Path(schedule_file).resolve().parent.parent
    try:
        settings = load_settings(run_dir)
    except SearchError:
        settings = None
    study = schedule.provenance.study if schedule.provenance is not None else None
    if settings is not None and (study is None or study == settings.name):
        return settings.n_train, settings.n_heldout, f"as its run {settings.name!r} used"
    return default("n_train"), default("n_heldout"), "cachesearch run's defaults"


def _default_steps(spec: str) -> int:
    from ..embedded import embedded_package

    package = embedded_package(spec)
    return int(package.DEFAULT_STEPS) if package is not None else 50
