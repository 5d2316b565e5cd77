"""``cachesearch run``: search the Pareto front of caching schedules, export it and write the report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ._common import CACHE_HELP, check_device, check_writable_folder, fail, quiet_libraries, set_threads, user_errors
from ._progress import search_progress

if TYPE_CHECKING:
    from rich.console import Console

    from ..search import RunSummary

__all__ = ["register"]


def _loss(x: float | None) -> str:
    return "–" if x is None else f"{x:.3g}"


def _front_table(console: Console, summary: RunSummary) -> tuple[Any, list[str]]:
    """The front as a table that never cuts a file name or a number: the file and its cost always, then as many
    of held-out loss, measured speedup (only when measured), train loss and origin (the baseline a file was) as
    the console's width allows, in that order. Returns the table and the columns left out."""
    from rich import box
    from rich.table import Table

    export = summary.export
    cost_name = "cost" if summary.objective == "cost" else "latency"  # a ratio to full compute (said below)
    if export is not None:
        rows = [(e.file, e.objective, e.speedup, e.quality.train, e.quality.heldout, e.baseline or "search")
                for e in export.entries]
    else:
        rows = []
        for t in summary.front:
            policy = t.user_attrs.get("policy", {})
            what = policy.get("kind", "?") if policy.get("kind") != "joint" else (
                f"steps{policy['steps'].get('count')}+{policy['mask'].get('kind')}")
            speedup = (t.user_attrs.get("result") or {}).get("speedup")
            rows.append((f"t{t.number:04d} {what} (not exported)", t.values[1], speedup, t.values[0], None,
                         t.user_attrs.get("baseline") or "search"))
    cells = {"file": [r[0] for r in rows], cost_name: [f"{r[1]:.3f}" for r in rows],
             "speedup": [f"{r[2]:.2f}×" if r[2] else "–" for r in rows], "train": [_loss(r[3]) for r in rows],
             "held-out": [_loss(r[4]) for r in rows], "from": [r[5] for r in rows]}
    width = {k: max([len(k), *map(len, v)]) for k, v in cells.items()}
    room = console.width - 2 - width["file"] - (width[cost_name] + 3)
    optional = ["held-out", *(["speedup"] if any(r[2] for r in rows) else []), "train", "from"]
    shown = []
    for col in optional:
        if width[col] + 3 <= room:
            shown.append(col)
            room -= width[col] + 3
    columns = ["file", cost_name] + [c for c in ("speedup", "train", "held-out", "from") if c in shown]
    table = Table(title=f"Pareto front of {summary.name}", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in columns:
        table.add_column("schedule" if col == "file" else col, no_wrap=True, min_width=width[col],
                         justify="left" if col in ("file", "from") else "right")
    for i in range(len(rows)):
        table.add_row(*(cells[c][i] for c in columns))
    return table, [c for c in optional if c not in shown and not (c == "from" and not rows)]


def _stopped(summary: RunSummary) -> str:
    """Why the search stopped, naming the budget and its option."""
    if summary.stopped == "budget":
        return f"trial budget reached ({summary.finished} finished of --trials {summary.trial_budget})"
    if summary.stopped == "timeout":
        return f"time budget reached (--timeout {summary.timeout:g} s)" if summary.timeout else "time budget reached"
    if summary.stopped == "interrupted":
        return "interrupted (Ctrl-C)"
    return "the search ended"


def _summary(console: Console, summary: RunSummary) -> None:
    from .._util import relative_path
    from ..search import headline
    from ..search.redact import hide_password
    from ..search.storage import relative_storage

    export = summary.export
    table, left_out = _front_table(console, summary)
    console.print(table)
    if left_out:
        console.print(f"[dim]({', '.join(left_out)}: left out at this width; report.md has every column)[/]")
    if export is not None:
        metric = export.metric or "quality"
        cost = ("cost: analytic ratio to full compute (denoiser MACs)" if summary.objective == "cost" else
                "latency: measured ratio to full compute")
        if summary.objective == "cost" and any(e.kind == "runtime" for e in export.entries):
            cost += " (a runtime schedule's: MACs of what executed, counted per image)"
        if any(e.speedup for e in export.entries):
            cost += "; speedup: measured on this device (--latency measured)"
        console.print(f"quality metric: [bold]{metric}[/] (distance to full compute, lower is better); {cost}")
        for line in headline(export):
            console.print(f"  • {line}")
    console.print(
        f"trials: {summary.trials_total} in the study ({summary.completed} complete, {summary.screened} screened "
        f"out, {summary.failed} failed, "
        f"{summary.duplicates} duplicates not re-run); {summary.trials_this_session} evaluated in this session; "
        f"stopped: {_stopped(summary)}; {summary.seconds:.0f} s"
    )
    run_dir = Path(summary.run_dir)
    console.print(f"run directory: {run_dir}")
    if export is not None:
        console.print(f"  schedules:  {export.schedules_dir} ({len(export.entries)} files + index.yaml)")
    if summary.report is not None:
        console.print(f"  report:     {summary.report}, {run_dir / 'report.html'}")
        console.print(f"  plots:      {run_dir / 'pareto.png'}, {run_dir / 'profile.png'}")
    study = hide_password(summary.storage)
    if "://" not in summary.storage:  # a journal: inside the run folder as the other paths are, else cwd-relative
        inside = relative_storage(summary.storage, run_dir)
        study = str(run_dir / inside) if not inside.startswith("..") else relative_path(summary.storage)
    console.print(f"  study:      {study}  (browse: optuna-dashboard {study})")
    if summary.stopped == "interrupted":
        console.print(f"[yellow]interrupted[/]: resume with `cachesearch run --name {summary.name}`; export the "
                      f"front so far with `cachesearch export --name {summary.name}`")
    elif summary.stopped == "timeout":
        console.print(f"search on where it stopped: `cachesearch run --name {summary.name}`")


def _finished(console: Console, settings: Any, done: int) -> None:
    """What to do with a run whose trial budget is spent (nothing is searched or rewritten)."""
    from ..search.settings import default

    out = "" if settings.out == default("out") else f" --out {settings.out}"
    report = settings.run_dir / "report.html"
    console.print(f"run {settings.name!r} is finished: {done} finished trials of --trials {settings.trials}"
                  + (f"; its report: {report}" if report.is_file() else ""), soft_wrap=True)
    console.print(f"  search further:     cachesearch run --name {settings.name}{out} --trials "
                  f"{settings.trials + max(100, settings.trials // 2)}", soft_wrap=True)
    console.print(f"  start a fresh run:  cachesearch run --name {settings.name}-2{out} (or remove "
                  f"{settings.run_dir})", soft_wrap=True)
    console.print(f"  re-export its front: cachesearch export --name {settings.name}{out}", soft_wrap=True)


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
    warm_start: str = _option("warm_start"),
    seed: int = _option("seed"),
    storage: str = _option("storage"),
    executor: str = _option("executor"),
    workers: int = _option("workers"),
    address: str = _option("address"),
    device: str = _option("device"),
    prefix_cache_mb: int = _option("prefix_cache_mb"),
    n_train: int = _option("n_train"),
    n_heldout: int = _option("n_heldout"),
    screen: str = _option("screen"),
    profile_prompts: int = _option("profile_prompts"),
    heldout_max: int = _option("heldout_max"),
    prompts_file: str = _option("prompts_file"),
    metric: str = _option("metric"),
    tail_threshold: float = _option("tail_threshold"),
    out: str = _option("out"),
    threads: int = typer.Option(None, "--threads", help="torch CPU threads in this process. Default 1 on CPU "
                                                        "(shared machines slow down with more)."),
    cache_dir: str = typer.Option(None, "--cache-dir", help=CACHE_HELP),
    no_export: bool = typer.Option(False, "--no-export", help="Search only; export later with `cachesearch export`."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Search caching schedules on the quality × cost Pareto front, export the front and write the report.

    With no arguments: the embedded model, 20 DDIM steps, the joint space, local executor, within ~10 minutes on
    a 2-core CPU. `cachesearch run --name X` resumes run X (finished trials are kept, never re-run).
    """
    from dataclasses import fields, replace

    from rich.console import Console

    from .._util import default_cache_dir
    from ..search.resume import finished_run, preflight, resolve_settings
    from ..search.settings import RunSettings, SearchError, eval_flags

    console = Console(stderr=False)
    setting_names = {f.name for f in fields(RunSettings)} - {"name", "out"}
    explicit = {k: v for k, v in ctx.params.items() if k in setting_names}
    no_timeout = timeout is not None and timeout == 0
    if no_timeout:
        explicit.pop("timeout")
    with user_errors(eval_flags()):
        # Everything that can fail without the model fails here, in one line, before torch is imported.
        try:
            settings = resolve_settings(name, explicit, out=out)
            if no_timeout:
                settings = replace(settings, timeout=None)
            check_device(settings.device)
            check_writable_folder(settings.out, "--out")
            if settings.run_dir.exists():  # a resumed run's own folder
                check_writable_folder(settings.run_dir, "--out")
            check_writable_folder(cache_dir or default_cache_dir(), "--cache-dir")
            preflight(settings)
            done = finished_run(settings)
        except SearchError as e:
            raise fail(str(e)) from None
        if done is not None:
            _finished(console, settings, done)
            return
        from ..search import SpaceError, run_search

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
