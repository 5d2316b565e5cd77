"""``cachesearch profile --model M``: Block Caching's block-change profile as JSON + heatmap PNG."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from ._common import EVAL_FLAGS, check_device, fail
from .evaluate import _default_steps, evaluation_errors, progress_bars

__all__ = ["register"]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "model"


def register(app: typer.Typer) -> None:
    """Add the ``profile`` command to ``app``."""

    @app.command("profile")
    def profile(
        model: Annotated[
            str, typer.Option("--model", help="Model spec (embedded, arch:sd15, a pipeline folder, a hub id).")
        ] = "embedded",
        steps: Annotated[int | None, typer.Option("--steps", help="Sampler steps (default: the model's).")] = None,
        scheduler: Annotated[
            str | None, typer.Option("--scheduler", help="ddim, dpmsolver++, euler, pndm or heun (default: model's).")
        ] = None,
        guidance_scale: Annotated[
            float | None, typer.Option("--guidance-scale", help="CFG scale (default: the model's).")
        ] = None,
        n: Annotated[int, typer.Option("--n", help="Prompts to average over (train split).")] = 8,
        prompts: Annotated[
            Path | None, typer.Option("--prompts", help="Prompt file (.txt one a line, or .yaml).")
        ] = None,
        granularity: Annotated[str, typer.Option("--granularity", help="stage or layer.")] = "stage",
        device: Annotated[str, typer.Option("--device", help="cpu, cuda or cuda:N.")] = "cpu",
        dtype: Annotated[str | None, typer.Option("--dtype", help="float32, float16 or bfloat16.")] = None,
        batch_size: Annotated[int, typer.Option("--batch-size", help="Prompts per pipeline call.")] = 8,
        out: Annotated[
            Path | None,
            typer.Option("--out", help="Output folder (default: artifacts/profiles/<model>-<scheduler>-<steps>)."),
        ] = None,
    ) -> None:
        """Profile how much each block's output changes between steps; writes profile.json + profile.png."""
        from rich.console import Console
        from rich.table import Table

        from ..evaluate import EvalConfig, Evaluator, profile_blocks, save_profile

        console = Console(stderr=True)
        flags = {k: v for k, v in EVAL_FLAGS.items() if k != "n_heldout"} | {"n_train": "--n"}
        with evaluation_errors(flags):
            check_device(device)
            if granularity not in ("stage", "layer"):
                raise fail(f"--granularity: expected 'stage' or 'layer', got {granularity!r}")
            config = EvalConfig(
                model=model,
                device=device,
                dtype=dtype,
                scheduler=scheduler,
                num_inference_steps=steps or _default_steps(model),
                guidance_scale=guidance_scale,
                n_train=n,
                n_heldout=1,
                prompts_file=None if prompts is None else str(prompts),
                batch_size=batch_size,
            )
            with progress_bars(console) as progress:
                evaluator = Evaluator(config, progress=progress)
                result = profile_blocks(evaluator, split="train", granularity=granularity)
            folder = out or Path("artifacts/profiles") / _slug(
                f"{evaluator.source}-{type(evaluator.pipe.scheduler).__name__}-{evaluator.num_inference_steps}"
            )
            meta = evaluator.describe()
            meta.update(granularity=granularity, prompts=evaluator.prompt_set("train").digest(), n_images=n)
            json_path, png_path = save_profile(
                result,
                folder,
                metadata=meta,
                title=f"{evaluator.source}: block output change per step ({evaluator.num_inference_steps} steps)",
            )
        table = Table(title="mean relative change per step (steps 1..N-1)", title_justify="left")
        table.add_column("block")
        table.add_column("mean", justify="right")
        table.add_column("max", justify="right")
        for block, row in zip(result.blocks, result.changes):
            tail = row[1:] or (0.0,)
            table.add_row(block, f"{sum(tail) / len(tail):.4f}", f"{max(tail):.4f}")
        Console().print(table)
        typer.echo(f"wrote {json_path}")
        typer.echo(f"wrote {png_path}")
