"""``cachesearch run``: search the Pareto front of caching schedules, export it and write the report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ._common import check_device, check_writable_folder, fail, quiet_libraries, set_threads, user_errors
from ._progress import search_progress

if TYPE_CHECKING:
    from rich.console import Console

    from ..search import RunSummary

__all__ = ["register"]


def _summary(console: Console, summary: RunSummary) -> None:
    from rich.table import Table

    from ..search import headline

    export = summary.export
    cost_name = "cost ratio" if summary.objective == "cost" else "latency ratio"
    table = Table(title=f"Pareto front of {summary.name}", show_lines=False)
    for col, justify in (("schedule", "left"), ("trial", "right"), (cost_name, "right"), ("speedup", "right"),
                         ("train", "right"), ("held-out", "right"), ("from", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    if export is not None:
        for e in export.entries:
            table.add_row(e.file, str(e.trial), f"{e.objective:.3f}", f"{(e.speedup or 0):.2f}×",
                          f"{e.quality.train:.4g}", f"{e.quality.heldout:.4g}", e.baseline or "search")
    else:
        for t in summary.front:
            policy = t.user_attrs.get("policy", {})
            what = policy.get("kind", "?") if policy.get("kind") != "joint" else (
                f"steps{policy['steps'].get('count')}+{policy['mask'].get('kind')}")
            speedup = t.user_attrs.get("speedup")
            table.add_row(f"{what} (not exported)", str(t.number), f"{t.values[1]:.3f}",
                          f"{speedup:.2f}×" if speedup else "", f"{t.values[0]:.4g}", "–",
                          t.user_attrs.get("baseline") or "search")
    console.print(table)
    if export is not None:
        metric = export.metric or "quality"
        console.print(f"quality metric: [bold]{metric}[/] (distance to full compute, lower is better)")
        for line in headline(export):
            console.print(f"  • {line}")
    console.print(
        f"trials: {summary.trials_total} in the study ({summary.completed} complete, {summary.screened} screened "
        f"out, {summary.failed} failed, "
        f"{summary.duplicates} duplicates not re-run); {summary.trials_this_session} evaluated in this session; "
        f"stopped: {summary.stopped}; {summary.seconds:.0f} s"
    )
    run_dir = Path(summary.run_dir)
    console.print(f"run directory: {run_dir}")
    if export is not None:
        console.print(f"  schedules:  {export.schedules_dir} ({len(export.entries)} files + index.yaml)")
    if summary.report is not None:
        console.print(f"  report:     {summary.report}")
        console.print(f"  plots:      {run_dir / 'pareto.png'}, {run_dir / 'profile.png'}")
    console.print(f"  study:      {summary.storage}  (optuna-dashboard {summary.storage})")
    if summary.stopped == "interrupted":
        console.print(f"[yellow]interrupted[/]: resume with `cachesearch run --name {summary.name}`; export the "
                      f"front so far with `cachesearch export --name {summary.name}`")


def _option(name: str, *short: str) -> Any:
    """The CLI option of a run setting: flag, help and default all come from :class:`RunSettings`. Its value
    is None when not given, so a resumed run keeps its stored setting."""
    from ..search.settings import flag, option_help

    return typer.Option(None, flag(name), *short, help=option_help(name))


def run(
    ctx: typer.Context,
    model: str = _option("model", "-m"),
    name: str = _option("name", "-n"),
    space: str = _option("space"),
    trials: int = _option("trials"),
    timeout: float = _option("timeout"),
    num_steps: int = _option("num_steps"),
    scheduler: str = _option("scheduler"),
    guidance_scale: float = _option("guidance_scale"),
    objective: str = _option("objective"),
    objective_stat: str = _option("objective_stat"),
    latency: str = _option("latency"),
    max_quality: float = _option("max_quality"),
    min_speedup: float = _option("min_speedup"),
    sampler: str = _option("sampler"),
    population: int = _option("population"),
    seed: int = _option("seed"),
    storage: str = _option("storage"),
    executor: str = _option("executor"),
    workers: int = _option("workers"),
    address: str = _option("address"),
    device: str = _option("device"),
    n_train: int = _option("n_train"),
    n_heldout: int = _option("n_heldout"),
    screen: str = _option("screen"),
    prompts_file: str = _option("prompts_file"),
    metric: str = _option("metric"),
    tail_threshold: float = _option("tail_threshold"),
    out: str = _option("out"),
    threads: int = typer.Option(None, "--threads", help="torch CPU threads in this process. Default 1 on CPU "
                                                        "(shared machines slow down with more)."),
    cache_dir: str = typer.Option(".cache/cachesearch", "--cache-dir", help="Reference image cache."),
    no_export: bool = typer.Option(False, "--no-export", help="Search only; export later with `cachesearch export`."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Search caching schedules on the quality × cost Pareto front, export the front and write the report.

    With no arguments: the embedded model, 20 DDIM steps, the joint space, local executor, within ~10 minutes on
    a 2-core CPU. `cachesearch run --name X` resumes run X (finished trials are kept, never re-run).
    """
    from dataclasses import fields, replace

    from rich.console import Console

    from ..search import RunSettings, SearchError, SpaceError, resolve_settings, run_search
    from ..search.settings import eval_flags

    console = Console(stderr=False)
    setting_names = {f.name for f in fields(RunSettings)} - {"name", "out"}
    explicit = {k: v for k, v in ctx.params.items() if k in setting_names}
    no_timeout = timeout is not None and timeout == 0
    if no_timeout:
        explicit.pop("timeout")
    with user_errors(eval_flags()):
        try:
            settings = resolve_settings(name, explicit, out=out)
            if no_timeout:
                settings = replace(settings, timeout=None)
        except (SearchError, SpaceError) as e:
            raise fail(str(e)) from None
        check_device(settings.device)
        check_writable_folder(settings.out, "--out")
        if settings.run_dir.exists():  # a resumed run's own folder
            check_writable_folder(settings.run_dir, "--out")
        check_writable_folder(cache_dir, "--cache-dir")
        set_threads(threads, settings.device)
        quiet_libraries()
        with search_progress(console, quiet=quiet) as progress:
            try:
                summary = run_search(settings, progress, space_given=space is not None, cache_dir=cache_dir,
                                     export=not no_export)
            except (SearchError, SpaceError) as e:
                progress.stop()
                raise fail(str(e)) from None
    _summary(console, summary)
    if summary.stopped == "interrupted":
        raise typer.Exit(130)


def register(app: typer.Typer) -> None:
    """Add ``run`` to the CLI."""
    app.command("run")(run)
