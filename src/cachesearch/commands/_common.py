"""Helpers shared by CLI commands: error reporting, the search progress display, library noise, threads."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import BarColumn, Task
from rich.text import Text

from ..schedule import ScheduleError

if TYPE_CHECKING:
    from ..search import Outcome

__all__ = ["EVAL_FLAGS", "RichProgress", "check_device", "check_writable_folder", "fail", "quiet_libraries",
           "set_threads", "user_errors"]

EVAL_FLAGS = {"model": "--model", "device": "--device", "dtype": "--dtype", "scheduler": "--scheduler",
              "num_inference_steps": "--steps", "guidance_scale": "--guidance-scale", "n_train": "--n-train",
              "n_heldout": "--n-heldout", "prompts_file": "--prompts", "metric": "--metric", "latency": "--latency",
              "latency_repeats": "--repeats", "batch_size": "--batch-size", "cache_dir": "--cache-dir"}
"""The option of each EvalConfig field in commands that build one (a command passes its own differences)."""


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` to stderr in red and return an exit to raise."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


@contextlib.contextmanager
def user_errors(flags: Mapping[str, str] | None = None) -> Iterator[None]:
    """Turn the errors users cause (bad files, bad specs) into a one-line message and exit code 2.

    ``flags``: the command's option for each EvalConfig field, so a message names ``--scheduler``, not
    ``EvalConfig.scheduler`` (default :data:`EVAL_FLAGS`)."""
    from ..search.settings import option_names

    try:
        yield
    except (ScheduleError, FileNotFoundError) as e:
        raise fail(str(e)) from None
    except ValueError as e:  # ModelLoadError and friends subclass ValueError
        if type(e).__module__.startswith("cachesearch"):
            raise fail(option_names(str(e), EVAL_FLAGS if flags is None else flags)) from None
        raise


def check_device(device: str, option: str = "--device") -> None:
    """Refuse a device this machine cannot use, in one line (exit code 2), before anything is loaded."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise fail(f"{option}: expected cpu, cuda or cuda:N, got {device!r}") from None
    if dev.type != "cuda":
        return
    if not torch.cuda.is_available():
        raise fail(f"{option} {device}: CUDA is not available on this machine (torch.cuda.is_available() is "
                   f"False); use {option} cpu")
    count = torch.cuda.device_count()
    if dev.index is not None and dev.index >= count:
        raise fail(f"{option} {device}: this machine has {count} CUDA device(s) (cuda:0 to cuda:{count - 1})")


def check_writable_folder(folder: str | os.PathLike[str], option: str) -> None:
    """Refuse, in one line (exit code 2), a folder that cannot be made or written: a file in its way, no
    permission, a read-only file system. Checked before any work; nothing is created (a probe file in the
    nearest existing folder is removed at once)."""
    given = Path(folder).expanduser()
    probe = given
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        what = "is a file" if probe == given else f"is inside {probe}, which is a file"
        raise fail(f"{option} {folder}: {what}, not a folder; give a folder with {option}")
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".cachesearch-write-check-")
    except OSError as e:
        where = "" if probe == given else f" (the nearest existing folder, {probe})"
        raise fail(f"{option} {folder}: cannot write there{where}: {e.strerror or e}; give a folder you can "
                   f"write with {option}") from None
    os.close(fd)
    os.unlink(tmp)


class _StageBar(BarColumn):
    """The bar of a task with parts; nothing for a stage without (a status line, not an empty bar)."""

    def render(self, task: Task) -> Any:
        if task.fields.get("stage") and not task.fields.get("parts"):
            return Text("")
        return super().render(task)


class RichProgress:
    """Draws search progress with rich: a status line for preparation, then a bar with trials done, front size,
    elapsed time and ETA (from the trial budget and ``--timeout``, whichever ends first). When the search
    stops, the bar ends at the number of trials actually finished; finishing stages with parts (held-out
    evaluations) show a bar, the others a status line, on one line below the trials bar; on exit every spinner
    stops."""

    def __init__(self, console: Any, *, quiet: bool = False) -> None:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = console
        self.quiet = quiet
        self.bar = Progress(
            SpinnerColumn(finished_text="[green]✓[/]"),
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
        self.total: int | None = None
        self.deadline: float | None = None
        self.t_start = time.monotonic()
        self.session_done = 0
        self.first_done = 0
        self.done = 0
        self.front = 0

    def __enter__(self) -> RichProgress:
        self.bar.start()
        self.stage_task = self._new_stage("preparing")
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.stop(ok=exc_type is None)

    def stop(self, *, ok: bool = False) -> None:
        """Stop the display: the current stage is marked done (``ok``) or left as it was; no spinner spins on."""
        if self.bar.live.is_started:
            if self.stage_task is not None:
                task = self.bar.tasks[self.stage_task]
                if task.description == "finishing":  # nothing came after the search (--no-export)
                    self.bar.update(self.stage_task, visible=False)
                elif ok or task.total is not None:
                    self._finish(self.stage_task)
                else:
                    self.bar.update(self.stage_task, visible=False)
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
        self.total, self.first_done, self.done = total, done, done
        self.t_start = time.monotonic()
        self.deadline = self.t_start + timeout if timeout else None
        self.task = self.bar.add_task("searching", total=total, completed=done, counts=self._counts(done),
                                      front="front [bold]–[/]", eta=f"ETA {self._eta(done)}")

    def trial(self, *, number: int, done: int, front: int, outcome: Outcome) -> None:
        self.session_done = done - self.first_done
        self.done, self.front = done, front
        self.bar.update(self.task, completed=done, counts=self._counts(done), front=f"front [bold]{front}[/]",
                        eta=f"ETA {self._eta(done)}")

    def note(self, text: str) -> None:
        self.console.print(f"[yellow]•[/] {text}")

    def end(self) -> None:
        if self.task is not None:  # the bar ends at the trials actually finished (a timeout stops it early)
            stopped = f" (of {self.total})" if self.total is not None and self.done < self.total else ""
            self.bar.update(self.task, total=self.done or 1, counts=f"{self.done} trials{stopped}", eta="")
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
