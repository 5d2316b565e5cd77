"""Helpers shared by CLI commands: error reporting, the search progress display, library noise, threads."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import typer

from ..schedule import ScheduleError

if TYPE_CHECKING:
    from ..search import Outcome

__all__ = ["RichProgress", "fail", "quiet_libraries", "set_threads", "user_errors"]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` to stderr in red and return an exit to raise."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors users cause (bad files, bad specs) into a one-line message and exit code 2."""
    try:
        yield
    except (ScheduleError, FileNotFoundError) as e:
        raise fail(str(e)) from None
    except ValueError as e:  # ModelLoadError and friends subclass ValueError
        if type(e).__module__.startswith("cachesearch"):
            raise fail(str(e)) from None
        raise


class RichProgress:
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

    def __enter__(self) -> RichProgress:
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

    def trial(self, *, number: int, done: int, front: int, outcome: Outcome) -> None:
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


def set_threads(threads: int | None, device: str) -> None:
    import torch

    if threads is None:
        if device.startswith("cuda"):
            return
        threads = 1
    if threads < 1:
        raise fail(f"--threads: expected a positive integer, got {threads}")
    torch.set_num_threads(threads)
