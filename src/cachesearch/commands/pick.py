"""``cachesearch pick``: choose one schedule from a run's exported front by budget."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import user_errors

__all__ = ["register"]


def pick(
    index: Annotated[Path, typer.Argument(help="A run's schedules/index.yaml (or the schedules folder).")],
    max_cost: float = typer.Option(None, "--max-cost", help="Largest analytic cost ratio (1.0 = full compute)."),
    max_latency_ms: float = typer.Option(None, "--max-latency-ms", help="Largest measured latency in ms."),
    min_speedup: float = typer.Option(None, "--min-speedup", help="Smallest speedup over full compute."),
    max_loss: float = typer.Option(None, "--max-loss", help="Largest quality loss (the front's metric)."),
    split: str = typer.Option("heldout", "--split", help="Prompt set whose loss counts: heldout or train."),
    stat: str = typer.Option("mean", "--stat", help="Statistic of the per-image losses that --max-loss bounds and "
                                                   "the pick ranks: mean, p90 (the worst tenth of images) or max."),
) -> None:
    """Print the file of the schedule with the lowest loss within a budget (--max-cost, --max-latency-ms,
    --min-speedup), or, with only --max-loss, the cheapest one within that loss. Nothing fits: exit code 2 and
    the closest option."""
    from ..schedule import load_front, load_schedule

    with user_errors():
        front = load_front(index)
        bounds = {"max_cost": max_cost, "max_latency_ms": max_latency_ms, "min_speedup": min_speedup,
                  "max_loss": max_loss, "split": split, "stat": stat}
        entry = front.choose(**bounds)
        path = front.path.parent / entry.file
        load_schedule(path)  # the chosen file itself must load
    typer.echo(str(path))
    typer.echo(f"  {entry.describe(split)}", err=True)


def register(app: typer.Typer) -> None:
    app.command("pick")(pick)
