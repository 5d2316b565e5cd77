"""Helpers shared by CLI commands: error reporting and progress bars."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer

from ..schedule import ScheduleError

__all__ = ["fail", "user_errors"]


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
