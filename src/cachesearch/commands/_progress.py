"""How a search, export or report shows its progress: a rich display on a terminal (:class:`RichProgress`),
plain lines when the output goes to a file or a pipe (:class:`PlainProgress`: a progress bar there prints
nothing until the end). :func:`search_progress` picks one. A step that fails is marked ``✗``, never ``✓``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.progress import BarColumn, SpinnerColumn, Task
from rich.text import Text

if TYPE_CHECKING:
    from ..search import Outcome

__all__ = ["PlainProgress", "RichProgress", "search_progress"]


def search_progress(console: Any, *, quiet: bool = False) -> RichProgress | PlainProgress:
    """A rich display when ``console`` is a terminal, else plain lines (``quiet``: show nothing)."""
    return RichProgress(console, quiet=quiet) if console.is_terminal else PlainProgress(console, quiet=quiet)


class _Clock:
    """Trials done and the time left, from the trial budget and ``--timeout`` (whichever ends first)."""

    def __init__(self) -> None:
        self.total: int | None = None
        self.deadline: float | None = None
        self.t_start = time.monotonic()
        self.first_done = 0
        self.done = 0
        self.front = 0

    def start(self, total: int | None, done: int, timeout: float | None) -> None:
        self.total, self.first_done, self.done = total, done, done
        self.t_start = time.monotonic()
        self.deadline = self.t_start + timeout if timeout else None

    def counts(self, done: int) -> str:
        return f"{done}/{self.total} trials" if self.total else f"{done} trials"

    def eta(self, done: int) -> str:
        now = time.monotonic()
        left: list[float] = []
        if self.deadline is not None:
            left.append(max(0.0, self.deadline - now))
        session = done - self.first_done
        if self.total is not None and session > 0:
            left.append(max(0, self.total - done) * (now - self.t_start) / session)
        return _clock(min(left)) if left else "–"

    def elapsed(self) -> str:
        return _clock(time.monotonic() - self.t_start)

    def ended(self) -> str:
        stopped = f" (of {self.total})" if self.total is not None and self.done < self.total else ""
        return f"{self.done} trials{stopped}"


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60}:{s % 60:02d}"


class _StageBar(BarColumn):
    """The bar of a task with parts; nothing for a stage without (a status line, not an empty bar)."""

    def render(self, task: Task) -> Any:
        if task.fields.get("stage") and not task.fields.get("parts"):
            return Text("")
        return super().render(task)


class _Status(SpinnerColumn):
    """A spinner while running, ``✓`` when done, ``✗`` when the step failed."""

    def render(self, task: Task) -> Any:
        if task.fields.get("failed"):
            return Text("✗", style="bold red")
        return super().render(task)


class RichProgress:
    """Draws search progress with rich: a status line for preparation, then a bar with trials done, front size,
    elapsed time and ETA (from the trial budget and ``--timeout``, whichever ends first). When the search
    stops, the bar ends at the number of trials actually finished; finishing stages with parts (held-out
    evaluations) show a bar, the others a status line, on one line below the trials bar; on exit every spinner
    stops, and a step that failed keeps its line, marked ``✗``."""

    def __init__(self, console: Any, *, quiet: bool = False) -> None:
        from rich.progress import Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.quiet = quiet
        self.bar = Progress(
            _Status(finished_text="[green]✓[/]"),
            TextColumn("{task.description}"),
            _StageBar(),
            TextColumn("{task.fields[counts]}"),
            TextColumn("{task.fields[front]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            console=console,
            transient=False,
            disable=quiet,
        )
        self.task: Any = None
        self.stage_task: Any = None
        self.clock = _Clock()

    def __enter__(self) -> RichProgress:
        self.bar.start()
        self.stage_task = self._new_stage("preparing")
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.stop(ok=exc_type is None)

    def stop(self, *, ok: bool = False) -> None:
        """Stop the display: the current stage is marked done (``ok``) or failed (``✗``); no spinner spins on."""
        if self.bar.live.is_started:
            if self.stage_task is not None:
                task = self.bar.tasks[self.stage_task]
                if task.description == "finishing" and ok:  # nothing came after the search (--no-export)
                    self.bar.update(self.stage_task, visible=False)
                elif ok:
                    self._finish(self.stage_task)
                else:
                    self.bar.update(self.stage_task, failed=True, visible=True)
                    self.bar.stop_task(self.stage_task)
            self.bar.stop()

    # -- Progress protocol --------------------------------------------------------------------------------
    def stage(self, text: str, done: int | None = None, total: int | None = None) -> None:
        if self.stage_task is None:
            return
        counts = f"{done}/{total}" if done is not None and total else ""
        self.bar.update(self.stage_task, description=text, counts=counts, total=total or None,
                        completed=done or 0, visible=True, parts=bool(total))

    def start(self, *, total: int | None, done: int, timeout: float | None) -> None:
        self.bar.update(self.stage_task, visible=False)
        self.clock.start(total, done, timeout)
        self.task = self.bar.add_task("searching", total=total, completed=done, counts=self.clock.counts(done),
                                      front="front [bold]–[/]", eta=f"ETA {self.clock.eta(done)}")

    def trial(self, *, number: int, done: int, front: int, outcome: Outcome) -> None:
        self.clock.done, self.clock.front = done, front
        self.bar.update(self.task, completed=done, counts=self.clock.counts(done), front=f"front [bold]{front}[/]",
                        eta=f"ETA {self.clock.eta(done)}")

    def note(self, text: str) -> None:
        self.console.print(f"[yellow]•[/] {text}")

    def end(self) -> None:
        if self.task is not None:  # the bar ends at the trials actually finished (a timeout stops it early)
            self.bar.update(self.task, total=self.clock.done or 1, counts=self.clock.ended(), eta="")
            self._finish(self.task)
        self.bar.update(self.stage_task, visible=False)
        self.stage_task = self._new_stage("finishing")  # one line below the trials bar for every finishing step

    # -- helpers ------------------------------------------------------------------------------------------
    def _new_stage(self, text: str) -> Any:
        return self.bar.add_task(text, total=None, counts="", front="", eta="", stage=True, parts=False)

    def _finish(self, task_id: Any) -> None:
        task = self.bar.tasks[task_id]
        total = task.total if task.total is not None else 1
        self.bar.update(task_id, total=total, completed=total)
        self.bar.stop_task(task_id)


class PlainProgress:
    """The same events as plain lines, for output that is not a terminal (a log file, CI, a pipe): each step
    once when it starts, counts of a step with parts and of the search at most every ``every`` seconds (and at
    the end), the end of the search, and ``failed:`` for the step an error stopped. Steps reported while a step
    with parts is under way (one schedule's images during the held-out validation of the front) are its
    details: printed, indented, only when a line is due."""

    def __init__(self, console: Any, *, quiet: bool = False, every: float = 10.0) -> None:
        self.console = console
        self.quiet = quiet
        self.every = every
        self.clock = _Clock()
        self.current: str | None = None  # the step under way (named if it fails)
        self.step: str | None = None  # the last top-level step printed
        self.outer: str | None = None  # a step with parts under way
        self.last_line = -float("inf")

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.stop(ok=exc_type is None)

    def stop(self, *, ok: bool = False) -> None:
        """Say which step failed (nothing when ``ok``); later calls say nothing."""
        if not ok and self.current is not None:
            self._print(f"failed: {self.current}")
        self.current = None

    def _print(self, line: str) -> None:
        if not self.quiet:
            self.console.print(line, highlight=False, markup=False, soft_wrap=True)
        self.last_line = time.monotonic()

    def _due(self) -> bool:
        return time.monotonic() - self.last_line >= self.every

    # -- Progress protocol --------------------------------------------------------------------------------
    def stage(self, text: str, done: int | None = None, total: int | None = None) -> None:
        line = f"{text}: {done or 0}/{total}" if total else f"{text} …"
        if self.outer is not None and text != self.outer:  # a detail of the step with parts under way
            if text != self.current and self._due():
                self._print(f"  {line}")
            self.current = text
            return
        if total:
            self.outer = text if (done or 0) < total else None
        self.current = text
        if text != self.step:
            self.step = text
            self._print(line)
        elif total and done is not None and (done == total or self._due()):
            self._print(line)

    def start(self, *, total: int | None, done: int, timeout: float | None) -> None:
        self.clock.start(total, done, timeout)
        self.current = self.step = "searching"
        self.outer = None
        limit = f", stops after {timeout:g} s" if timeout else ""
        self._print(f"searching: {self.clock.counts(done)}{limit}")

    def trial(self, *, number: int, done: int, front: int, outcome: Outcome) -> None:
        self.clock.done, self.clock.front = done, front
        if self._due() or (self.clock.total is not None and done >= self.clock.total):
            self._print(f"searching: {self.clock.counts(done)}, front {front}, {self.clock.elapsed()} elapsed, "
                        f"ETA {self.clock.eta(done)}")

    def note(self, text: str) -> None:
        self._print(f"• {text}")

    def end(self) -> None:
        self._print(f"searched: {self.clock.ended()}, front {self.clock.front}, in {self.clock.elapsed()}")
        self.current = self.step = None
