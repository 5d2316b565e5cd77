"""Helpers shared by CLI commands: error reporting, checks before any work, library noise, threads."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import typer

from ..schedule import ScheduleError

__all__ = ["CACHE_HELP", "EVAL_FLAGS", "check_device", "check_writable_folder", "fail", "quiet_libraries",
           "set_threads", "user_errors"]

EVAL_FLAGS = {"model": "--model", "device": "--device", "dtype": "--dtype", "scheduler": "--scheduler",
              "num_inference_steps": "--steps", "guidance_scale": "--guidance-scale", "n_train": "--n-train",
              "n_heldout": "--n-heldout", "prompts_file": "--prompts", "metric": "--metric", "latency": "--latency",
              "latency_repeats": "--repeats", "batch_size": "--batch-size", "cache_dir": "--cache-dir"}
"""The option of each EvalConfig field in commands that build one (a command passes its own differences)."""

CACHE_HELP = ("Reference image cache. Default: $CACHESEARCH_CACHE_DIR, else $XDG_CACHE_HOME/cachesearch, else "
              "~/.cache/cachesearch.")


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
    if device == "cpu":  # nothing to check: no need to import torch for it
        return
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
