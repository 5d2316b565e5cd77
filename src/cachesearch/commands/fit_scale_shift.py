"""``cachesearch fit-scale-shift``: fit Block Caching's per-channel scale-shift for a schedule's reused outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import quiet_libraries, user_errors

__all__ = ["register"]


def fit_scale_shift(
    file: Annotated[Path, typer.Argument(help="A cachesearch schedule YAML file.")],
    model: str = typer.Option(..., "--model", "-m", help="Model spec (embedded, a pipeline folder, a cached hub id)."),
    method: str = typer.Option("lstsq", "--method", help="lstsq (closed form) or distill (the paper's, Adam)."),
    n_images: int = typer.Option(8, "--n-images", help="Train-set images to fit on."),
    seed: int = typer.Option(0, "--seed", help="Seed offset of the fitting images."),
    device: str = typer.Option("cpu", "--device", help="Device to load the model on."),
    out: Path = typer.Option(None, "--out", "-o", help="Output YAML (default: FILE's stem + '-ss.yaml'); the "
                                                      "sidecar <stem>.scale_shift.safetensors is written beside it."),
) -> None:
    """Fit a per (block, step, channel) scale and shift on the schedule's train prompts and write the @2
    schedule with its safetensors sidecar."""
    quiet_libraries()
    with user_errors():
        from ..evaluate._scale_shift import fit_scale_shift as fit
        from ..models._loaders import load_model
        from ..schedule import load_schedule

        schedule = load_schedule(file)
        loaded = load_model(model, device=device)
        fitted = fit(loaded.pipe, schedule, n_images=n_images, method=method, seed=seed)
        target = out if out is not None else file.with_name(file.stem + "-ss.yaml")
        path = fitted.save(target)
    typer.echo(str(path))
    typer.echo(f"  {len(fitted.scale_shift)} (block, step) entries over {len(fitted.scale_shift.blocks())} blocks",
               err=True)


def register(app: typer.Typer) -> None:
    app.command("fit-scale-shift")(fit_scale_shift)
