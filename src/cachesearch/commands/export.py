"""``cachesearch export``: (re-)export a run's Pareto front as validated schedule files."""

from __future__ import annotations

import typer

from ..search.settings import default, option_help
from ._common import CACHE_HELP, fail, quiet_libraries, set_threads, user_errors
from ._progress import search_progress

__all__ = ["register"]


def export(
    name: str = typer.Option(..., "--name", "-n", help="Run to export (a directory under --out)."),
    out: str = typer.Option(default("out"), "--out", help=option_help("out", with_default=False)),
    cache_dir: str = typer.Option(None, "--cache-dir", help=CACHE_HELP),
    threads: int = typer.Option(None, "--threads", help="torch CPU threads. Default 1 on CPU."),
    no_report: bool = typer.Option(False, "--no-report", help="Do not rewrite report.md and pareto.png."),
) -> None:
    """Write every Pareto-optimal trial of run NAME to <out>/NAME/schedules/ with train and held-out metrics.

    Each schedule is re-compiled from its trial's parameters and evaluated on the held-out prompts before it is
    written (held-out results are cached in heldout.json); files of trials no longer on the front are removed.
    """
    from rich.console import Console

    from ..search import SearchError, SpaceError, export_run

    console = Console()
    with user_errors():
        set_threads(threads, "cpu")
        quiet_libraries()
        with search_progress(console) as progress:
            try:
                result, report = export_run(name, out, progress, cache_dir=cache_dir, report=not no_report)
            except (SearchError, SpaceError) as e:
                progress.stop()
                raise fail(str(e)) from None
    for e in result.entries:
        console.print(f"  {e.file:<48} cost {e.objective:.3f}  {result.metric} train "
                      f"{e.quality.train:.4g}  held-out {e.quality.heldout:.4g}")
    for r in result.rejected:
        console.print(f"  [yellow]not exported[/]: trial {r['trial']}: {r['reason']}")
    console.print(f"{len(result.entries)} schedule(s) in {result.schedules_dir} (index: {result.index_path})")
    if report is not None:
        console.print(f"report: {report}, {report.parent / 'report.html'}")


def register(app: typer.Typer) -> None:
    """Add ``export`` to the CLI."""
    app.command("export")(export)
