"""The ``cachesearch`` command. Each command group lives in ``cachesearch/commands/<name>.py`` and exposes
``register(app)``; heavy imports stay inside the command functions so ``--help`` is fast."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from . import commands
from ._version import __version__


def _flags_without_type(params: list[Any]) -> list[Any]:
    """Flags take no value: typer's rich help would show them as ``--quiet <bool>``; show ``--quiet``."""
    for p in params:
        if getattr(p, "is_flag", False) and p.metavar is None:
            p.metavar = ""
    return params


class _Command(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_without_type(super().get_params(ctx))


class _Group(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_without_type(super().get_params(ctx))


app = typer.Typer(
    cls=_Group,
    name="cachesearch",
    help="Find and apply Pareto-optimal feature-caching schedules for diffusion models.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cachesearch {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Find caching schedules (`cachesearch run`) and apply them (`cachesearch generate --schedule`)."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())


for _mod in sorted(m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")):
    importlib.import_module(f"{commands.__name__}.{_mod}").register(app)
for _info in app.registered_commands:
    if _info.cls in (None, TyperCommand):
        _info.cls = _Command


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
