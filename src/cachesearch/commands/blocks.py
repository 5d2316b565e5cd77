"""``cachesearch blocks --model M``: the cacheable blocks of a denoiser and the MACs of each in one call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._common import fail, user_errors

__all__ = ["register"]


def _g(macs: float) -> str:
    return f"{macs / 1e9:,.1f}"


def register(app: typer.Typer) -> None:
    """Add the ``blocks`` command to ``app``."""

    @app.command("blocks")
    def blocks(
        model: Annotated[str, typer.Option("--model", help="Model spec: an arch: preset (arch:wan2.1-14b, "
                                                           "arch:flux2-dev, ...), embedded, a folder or a hub id.")]
        = "embedded",
        height: Annotated[int | None, typer.Option("--height", help="Render height in pixels (default: the "
                                                                    "model's).")] = None,
        width: Annotated[int | None, typer.Option("--width", help="Render width in pixels (default: the "
                                                                  "model's).")] = None,
        frames: Annotated[int | None, typer.Option("--frames", help="Frames per clip of a video model (default: "
                                                                    "the model's).")] = None,
        components: Annotated[bool, typer.Option("--components", help="Also list each block's components "
                                                                      "(attention, feed-forward).")] = False,
        json_out: Annotated[Path | None, typer.Option("--json", help="Also write the table as JSON here.")] = None,
    ) -> None:
        """Print the cost table of a denoiser: each block's MACs in one call (batch 1) at the model's render size,
        and its share of the call. Denoiser-only presets are built on the meta device: nothing is allocated."""
        from rich.console import Console
        from rich.table import Table

        from ..models._block_costs import block_costs
        from ..schedule import BlockKind

        with user_errors():
            try:
                costs = block_costs(model, height=height, width=width, frames=frames)
            except ValueError as e:
                raise fail(str(e)) from None
        total = costs.total
        size = f"{costs.height}×{costs.width} px" + (f", {costs.frames} frames" if costs.frames else "")
        latent = f"{costs.latent[0]}×{costs.latent[1]}" + (f"×{costs.latent[2]} frames" if costs.latent[2] else "")
        typer.echo(f"{model}: {costs.cls} (family {costs.family}), {size} (latents {latent})")
        typer.echo(f"one call (batch 1): {_g(total)} GMACs"
                   + (f"; {costs.experts} experts of this architecture, one runs each step" if costs.experts > 1
                      else ""))
        table = Table()
        for name, justify in (("block", "left"), ("kind", "left"), ("GMACs", "right"), ("share", "right")):
            table.add_column(name, justify=justify)
        rows = []
        for b in costs.space.blocks:
            if b.kind is BlockKind.COMPONENT and not components:
                continue
            rows.append({"block": b.name, "kind": b.kind.value, "macs": int(b.macs or 0)})
            name = b.name if b.kind is BlockKind.STAGE else f"  {b.name}"
            table.add_row(name, b.role if b.kind is BlockKind.COMPONENT else "block", _g(b.macs or 0),
                          f"{100 * (b.macs or 0) / total:.2f} %")
        other = int(costs.space.other_macs or 0)
        table.add_row("(outside the blocks)", "", _g(other), f"{100 * other / total:.2f} %")
        Console(width=120).print(table)
        if json_out is not None:
            data = {"model": model, "class": costs.cls, "family": costs.family, "height": costs.height,
                    "width": costs.width, "frames": costs.frames, "latent": list(costs.latent),
                    "experts": costs.experts, "macs_per_call": total, "other_macs": other, "blocks": rows}
            json_out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
            typer.echo(f"wrote {json_out}")
