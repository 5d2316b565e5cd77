"""The ``taylor`` reuse mode: forecast a block's output from finite differences over its last recomputes.

At a recompute at step ``s`` the block's output ``y`` refreshes its factors ``F₀ = y``,
``Fₖ₊₁ = (Fₖ − F'ₖ) / (s − s')`` from the factors ``F'`` of its previous recompute at step ``s'`` (up to the
schedule's order, as far as earlier recomputes reach); a reuse at step ``t`` returns
``Σₖ Fₖ · (t − s)ᵏ / k!``. This is diffusers' ``TaylorSeerState.update``/``predict`` (arXiv 2503.06923), for
any block: every tensor in the output (a tuple, a ``BaseOutput``) is forecast, anything else is returned as
last computed. Factors stay on the output's device and dtype; the steps are Python ints from the applier's call
counter, so nothing synchronises with the device.

With ``guard`` (a schedule's ``taylor_guard``) a forecast that diverges falls back to a lower order: the term
``Fₖ·(t − s)ᵏ/k!`` is added only while every term so far is no larger (L2 norm, per batch row) than the one before
it — the ratio test of a series that converges — and is finite. A second-order term that outgrows the first-order
one means the quadratic fitted over the last recomputes is being extrapolated past where it holds; the forecast
then stops at the order that still shrinks, down to plain reuse of ``F₀``. The test is a device-side
``torch.where`` on per-row norms: no value is read back to the host.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from ._tree import tree_map

__all__ = ["TaylorState", "taylor_forecast", "taylor_update", "tree_leaves"]

TaylorState = tuple[int, list[list[torch.Tensor]], Any]
"""``(step of the last update, factors per output tensor [F₀, F₁, …], that output as a structure template)``."""


def tree_leaves(obj: Any) -> list[torch.Tensor]:
    """The tensors of ``obj`` in :func:`~cachesearch.runtime._tree.tree_map`'s order."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if (isinstance(obj, tuple) and not hasattr(obj, "_fields")) or isinstance(obj, list):
        return [t for o in obj for t in tree_leaves(o)]
    if isinstance(obj, Mapping):
        return [t for o in obj.values() for t in tree_leaves(o)]
    return []


def taylor_update(prev: TaylorState | None, out: Any, step: int, order: int) -> TaylorState:
    """The factors after a recompute at ``step`` that returned ``out``.

    A second recompute at the same step (schedulers that call the denoiser twice per step) keeps the first's
    factors: the differences are over steps.
    """
    if prev is not None and prev[0] == step:
        return prev
    factors = []
    for i, y in enumerate(tree_leaves(out)):
        new = [y]
        if prev is not None and i < len(prev[1]):
            distance = step - prev[0]
            old = prev[1][i]
            for j in range(order):
                if j >= len(old) or old[j].shape != new[j].shape:
                    break  # not enough recomputes yet for this order, or the shape changed: restart there
                new.append((new[j] - old[j]) / distance)
        factors.append(new)
    return (step, factors, out)


def _row_norms(t: torch.Tensor) -> torch.Tensor:
    """L2 norm per batch row (dim 0) in float32, shaped to broadcast against ``t``; one norm for a 0-/1-D ``t``."""
    if t.ndim < 2:
        return torch.linalg.vector_norm(t, dtype=torch.float32)
    dims = tuple(range(1, t.ndim))
    return torch.linalg.vector_norm(t, dim=dims, keepdim=True, dtype=torch.float32)


def taylor_forecast(state: TaylorState, step: int, guard: bool = False) -> Any:
    """The forecast output at ``step`` (same structure as the last computed output).

    ``guard``: stop the series at the first term that is larger than the one before it or not finite (see the
    module docstring); without it the full series of the schedule's order (diffusers' TaylorSeer)."""
    last, factors, template = state
    offset = step - last
    forecasts = []
    for fs in factors:
        y = fs[0]
        if guard and len(fs) > 1 and fs[0].is_floating_point():
            prev, keep = _row_norms(fs[0]), None
            for k in range(1, len(fs)):
                term = fs[k] * (offset**k / math.factorial(k))
                norm = _row_norms(term)
                ok = norm <= prev  # False for inf and NaN too
                keep = ok if keep is None else keep & ok
                y = y + torch.where(keep, term, 0.0)
                prev = norm
        else:
            for k in range(1, len(fs)):
                y = y + fs[k] * (offset**k / math.factorial(k))
        forecasts.append(y)
    leaves = iter(forecasts)
    return tree_map(lambda _t: next(leaves), template)
