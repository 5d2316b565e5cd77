"""``cachesearch report``: rewrite a run's report.md and Pareto plot from its study and last export."""

from __future__ import annotations

import typer

from ..search.settings import default, option_help
from ._common import CACHE_HELP, fail, quiet_libraries, set_threads, user_errors
from ._progress import search_progress

__all__ = ["register"]


def report(
    name: str = typer.Option(..., "--name", "-n", help="Run to report on (a directory under --out)."),
    out: str = typer.Option(default("out"), "--out", help=option_help("out", with_default=False)),
    cache_dir: str = typer.Option(None, "--cache-dir", help=CACHE_HELP),
) -> None:
    """Write <out>/NAME/report.md, report.html (with images of the picked schedules, generated now) and
    pareto.png (front, baselines, held-out points; the block-change heatmap profile.png is written by the run).
    Uses the last export; run `cachesearch export --name NAME` first if the front changed."""
    from rich.console import Console

    from ..search import SearchError, SpaceError, find_run, open_run, write_report
    from ..search.export import load_export
    from ..search.storage import run_lock

    console = Console()
    with user_errors():
        set_threads(None, "cpu")
        quiet_libraries()
        with search_progress(console) as progress:
            try:
                with run_lock(find_run(name, out)):
                    prep = open_run(name, out, progress, cache_dir=cache_dir)
                    export = load_export(prep.run_dir)
                    path = write_report(prep, export, progress)
            except (SearchError, SpaceError) as e:
                progress.stop()
                raise fail(str(e)) from None
    console.print(f"report: {path}, {path.parent / 'report.html'}")
    console.print(f"plots:  {path.parent / 'pareto.png'}, {path.parent / 'profile.png'}")


def register(app: typer.Typer) -> None:
    """Add ``report`` to the CLI."""
    app.command("report")(report)
