"""The ``residual`` reuse mode: a reused block returns its fresh input plus the ``output − input`` it stored.

Dual-stream blocks (FLUX, SD3: ``(encoder_hidden_states, hidden_states)``) get the residual of both streams,
as diffusers' FirstBlockCache and cache-dit's DBCache apply them; which input and output element is which
stream comes from the block's registered :class:`~cachesearch.adapters.BlockIO`.
"""

from __future__ import annotations

from typing import Any

import torch

from ..adapters import BlockIO
from ..schedule import ScheduleError

__all__ = ["Residual", "add_residual", "residual_of"]

Residual = tuple[Any, torch.Tensor, "torch.Tensor | None"]
"""``(output, hidden output − hidden input, text output − text input or None)``."""


def residual_of(io: BlockIO, name: str, out: Any, args: tuple, kwargs: dict) -> Residual:
    """What a residual reuse of block ``name`` adds to its fresh inputs, from one computed call."""
    x = io.hidden_input(args, kwargs)
    y = io.hidden_output(out)
    if x is None or x.shape != y.shape:
        raise ScheduleError(
            f'blocks["{name}"]: reuse: residual needs a block whose output has its input\'s shape '
            f"(got {None if x is None else tuple(x.shape)} → {tuple(y.shape)}); "
            f"use reuse: output or list finer blocks (attentions, equal-width resnets)"
        )
    ye = io.encoder_output(out)
    if ye is None:
        return (out, y - x, None)
    xe = io.encoder_input(args, kwargs)
    if xe is None or xe.shape != ye.shape:
        raise ScheduleError(
            f'blocks["{name}"]: reuse: residual needs the text stream\'s output to have its input\'s shape '
            f"(got {None if xe is None else tuple(xe.shape)} → {tuple(ye.shape)}); use reuse: output"
        )
    return (out, y - x, ye - xe)


def add_residual(io: BlockIO, out: Any, delta: torch.Tensor, enc: torch.Tensor | None, args: tuple, kwargs: dict,
                 rows: slice | None = None) -> Any:
    """``out`` with the fresh inputs plus the stored residuals (only batch ``rows`` of them, if given)."""
    x = io.hidden_input(args, kwargs)
    hidden = x + delta if rows is None else x[rows] + delta[rows]
    if enc is None:
        return io.replace_hidden_output(out, hidden)
    xe = io.encoder_input(args, kwargs)
    return io.replace_outputs(out, hidden, xe + enc if rows is None else xe[rows] + enc[rows])
