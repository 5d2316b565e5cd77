"""``cachesearch run``: search the Pareto front of caching schedules, export it and write the report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from ._common import fail, user_errors

__all__ = ["register"]


class _RichProgress:
    """Draws search progress with rich: a status line for preparation, then a bar with trials done, front size,
    elapsed time and ETA (from the trial budget and ``--timeout``, whichever ends first)."""

    def __init__(self, console: Any, *, quiet: bool = False) -> None:
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = console
        self.quiet = quiet
        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[counts]}"),
            TextColumn("front [bold]{task.fields[front]}[/]"),
            TimeElapsedColumn(),
            TextColumn("ETA {task.fields[eta]}"),
            console=console,
            transient=False,
            disable=quiet,
        )
        self.task: Any = None
        self.stage_task: Any = None
        self.total: int | None = None
        self.deadline: float | None = None
        self.t_start = time.monotonic()
        self.session_done = 0
        self.first_done = 0
        self.last: str = ""

    def __enter__(self) -> _RichProgress:
        self.bar.start()
        self.stage_task = self.bar.add_task("preparing", total=None, counts="", front="–", eta="–")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.stop()

    # -- Progress protocol --------------------------------------------------------------------------------
    def stage(self, text: str, done: int | None = None, total: int | None = None) -> None:
        if self.stage_task is None:
            return
        counts = f"{done}/{total}" if done is not None and total else ""
        self.bar.update(self.stage_task, description=text, counts=counts, total=total or None,
                        completed=done or 0, visible=True)

    def start(self, *, total: int | None, done: int, timeout: float | None) -> None:
        self.bar.update(self.stage_task, visible=False)
        self.total, self.first_done = total, done
        self.t_start = time.monotonic()
        self.deadline = self.t_start + timeout if timeout else None
        self.task = self.bar.add_task("searching", total=total, completed=done, counts=self._counts(done),
                                      front="–", eta=self._eta(done))

    def trial(self, *, number: int, done: int, front: int, outcome: Any) -> None:
        self.session_done = done - self.first_done
        self.bar.update(self.task, completed=done, counts=self._counts(done), front=str(front), eta=self._eta(done))

    def note(self, text: str) -> None:
        if not self.quiet:
            self.console.print(f"[yellow]•[/] {text}")

    def end(self) -> None:
        if self.task is not None:
            self.bar.update(self.task, eta="0:00")
        self.bar.update(self.stage_task, visible=True, description="finishing", counts="", completed=0, total=None)

    # -- helpers ------------------------------------------------------------------------------------------
    def _counts(self, done: int) -> str:
        return f"{done}/{self.total} trials" if self.total else f"{done} trials"

    def _eta(self, done: int) -> str:
        now = time.monotonic()
        left: list[float] = []
        if self.deadline is not None:
            left.append(max(0.0, self.deadline - now))
        if self.total is not None and self.session_done > 0:
            rate = (now - self.t_start) / self.session_done
            left.append(max(0, self.total - done) * rate)
        if not left:
            return "–"
        s = int(min(left))
        return f"{s // 60}:{s % 60:02d}"


def _summary(console: Any, summary: Any) -> None:
    from rich.table import Table

    from ..search._report import headline

    export = summary.export
    cost_name = "cost ratio" if summary.objective == "cost" else "latency ratio"
    table = Table(title=f"Pareto front of {summary.name}", show_lines=False)
    for col, justify in (("schedule", "left"), ("trial", "right"), (cost_name, "right"), ("speedup", "right"),
                         ("train", "right"), ("held-out", "right"), ("from", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    if export is not None:
        for e in export.entries:
            table.add_row(e["file"], str(e["trial"]), f"{e.get('objective', e['cost_ratio']):.3f}",
                          f"{(e['speedup'] or 0):.2f}×",
                          f"{e['quality']['train']:.4g}", f"{e['quality']['heldout']:.4g}", e["baseline"] or "search")
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
        f"trials: {summary.trials_total} in the study ({summary.completed} complete, {summary.failed} failed, "
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


def run(
    model: str = typer.Option(None, "--model", "-m", help="Model spec: embedded (default), arch:sd15, a pipeline "
                                                           "folder or a cached hub id."),
    name: str = typer.Option(None, "--name", "-n", help="Run name (directory under --out); default from model and "
                                                         "sampler. An existing run is resumed."),
    space: str = typer.Option(None, "--space", help="Search space: a built-in name (joint, deepcache, blocks, steps) "
                                                    "or a YAML file (docs/search-spaces.md). Default: joint."),
    trials: int = typer.Option(None, "--trials", help="Stop when the study has this many finished trials "
                                                      "(baselines and duplicates included). Default 1000."),
    timeout: float = typer.Option(None, "--timeout", help="Stop starting trials after this many seconds; 0 = no "
                                                          "limit. Default 330."),
    steps: int = typer.Option(None, "--steps", help="Reference sampler steps. Default 20."),
    scheduler: str = typer.Option(None, "--scheduler", help="Sampler: ddim, dpmsolver++, euler, pndm, heun or a "
                                                            "diffusers class name. Default: the model's own."),
    guidance_scale: float = typer.Option(None, "--guidance-scale", help="CFG scale. Default: the model's."),
    objective: str = typer.Option(None, "--objective", help="Second objective: cost (analytic MACs ratio, default) "
                                                            "or latency (measured; needs --latency measured)."),
    latency: str = typer.Option(None, "--latency", help="analytic (default) or measured."),
    max_lpips: float = typer.Option(None, "--max-lpips", help="Constraint: quality loss <= this."),
    min_speedup: float = typer.Option(None, "--min-speedup", help="Constraint: speedup >= this (1/cost ratio "
                                                                  "under --objective cost)."),
    sampler: str = typer.Option(None, "--sampler", help="Optuna sampler: nsga2 (default), tpe or random."),
    population: int = typer.Option(None, "--population", help="NSGA-II population size. Default 24."),
    seed: int = typer.Option(None, "--seed", help="Sampler seed. Default 0."),
    storage: str = typer.Option(None, "--storage", help="Optuna storage URL (postgresql://… for many hosts) or a "
                                                        "journal file path. Default: <run>/study.journal."),
    executor: str = typer.Option(None, "--executor", help="local (default, in-process) or ray (Ray Tune)."),
    workers: int = typer.Option(None, "--workers", help="Ray: concurrent trials. Default 2."),
    address: str = typer.Option(None, "--address", help="Ray: address of an existing cluster (e.g. auto or "
                                                        "ray://host:10001). Default: start a local one."),
    device: str = typer.Option(None, "--device", help="cpu (default) or cuda[:N]."),
    n_train: int = typer.Option(None, "--n-train", help="Train images per evaluation. Default 8."),
    n_heldout: int = typer.Option(None, "--n-heldout", help="Held-out images for validation. Default 8."),
    prompts: str = typer.Option(None, "--prompts", help="Prompt file (text or YAML); default: built-in prompts."),
    metric: str = typer.Option(None, "--metric", help="Perceptual metric. Default lpips-alex (falls back offline "
                                                      "to stlpips-alex; the metric used is recorded)."),
    threads: int = typer.Option(None, "--threads", help="torch CPU threads in this process. Default 1 on CPU "
                                                        "(shared machines slow down with more)."),
    out: str = typer.Option("artifacts/runs", "--out", help="Directory of run directories."),
    cache_dir: str = typer.Option(".cache/cachesearch", "--cache-dir", help="Reference image cache."),
    no_export: bool = typer.Option(False, "--no-export", help="Search only; export later with `cachesearch export`."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Search caching schedules on the quality × cost Pareto front, export the front and write the report.

    With no arguments: the embedded model, 20 DDIM steps, the joint space, local executor, within ~10 minutes on
    a 2-core CPU. `cachesearch run --name X` resumes run X (finished trials are kept, never re-run).
    """
    from rich.console import Console

    from ..search import SearchError, SpaceError, resolve_settings, run_search

    console = Console(stderr=False)
    if timeout is not None and timeout == 0:
        timeout_value: float | None = None
        explicit_timeout = True
    else:
        timeout_value, explicit_timeout = timeout, timeout is not None
    explicit = dict(
        model=model, space=space, trials=trials, steps=steps, scheduler=scheduler, guidance_scale=guidance_scale,
        objective=objective, latency=latency, max_quality=max_lpips, min_speedup=min_speedup, sampler=sampler,
        population=population, seed=seed, storage=storage, executor=executor, workers=workers, address=address,
        device=device, n_train=n_train, n_heldout=n_heldout, prompts_file=prompts, metric=metric,
    )
    if explicit_timeout:
        explicit["timeout"] = timeout_value
    with user_errors():
        try:
            settings = resolve_settings(name, explicit, out=out)
            if explicit_timeout and timeout_value is None:
                from dataclasses import replace

                settings = replace(settings, timeout=None)
        except (SearchError, SpaceError) as e:
            raise fail(str(e)) from None
        _set_threads(threads, settings.device)
        quiet_libraries()
        with _RichProgress(console, quiet=quiet) as progress:
            try:
                summary = run_search(settings, progress, space_given=space is not None, cache_dir=cache_dir,
                                     export=not no_export)
            except (SearchError, SpaceError) as e:
                progress.bar.stop()
                raise fail(str(e)) from None
    _summary(console, summary)
    if summary.stopped == "interrupted":
        raise typer.Exit(130)


def quiet_libraries() -> None:
    """Keep library chatter (Optuna's INFO lines, diffusers' loading bars) out of the command's output."""
    import logging

    import optuna
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    diffusers_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    logging.getLogger("ray").setLevel(logging.WARNING)
    # The evaluator logs its metric fallback; `run` reports it as a note (and records it in every file).
    logging.getLogger("cachesearch.evaluate._quality").setLevel(logging.ERROR)


def _set_threads(threads: int | None, device: str) -> None:
    import torch

    if threads is None:
        if device.startswith("cuda"):
            return
        threads = 1
    if threads < 1:
        raise fail(f"--threads: expected a positive integer, got {threads}")
    torch.set_num_threads(threads)


def register(app: typer.Typer) -> None:
    """Add ``run`` to the CLI."""
    app.command("run")(run)
