"""What a hooked block does at a call: run, run and store, reuse (output, residual or Taylor forecast), or split a
CFG batch between a branch that runs and one that reuses; plus Block Caching's per-channel scale-shift.

One :class:`BlockHooks` per applied schedule; its wrappers read the clock's :class:`~._clock.Cursor` (the running
branch's row, step and store) and index a tuple: no host sync, nothing policy-specific.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..adapters import BlockIO, block_io_of
from ..schedule import ScheduleError
from ._clock import Cursor
from ._residual import Residual, add_residual, residual_of
from ._table import REUSE, RUN, STORE
from ._taylor import taylor_forecast, taylor_update
from ._tree import tree_cat, tree_slice

__all__ = ["BlockHooks"]


class BlockHooks:
    """The forwards of one schedule's hooked blocks (index ``i`` = position in the action rows).

    Args:
        names: block paths, in row order.
        modules: the blocks (of the first expert; every expert's block ``i`` has the same class).
        io: per block, its I/O contract where reuse needs one (residual, per-branch split, scale-shift), else None.
        cursor: the clock's cursor.
        residual: ``reuse: residual``.
        taylor: the Taylor order for ``reuse: taylor``, else ``None``.
        taylor_guard: the forecast falls back to a lower order where it diverges (``Schedule.taylor_guard``).
        num_steps: the schedule's steps (length of a scale-shift table).
    """

    def __init__(self, names: list[str], modules: list[torch.nn.Module], io: list[BlockIO | None], cursor: Cursor,
                 *, residual: bool, taylor: int | None, num_steps: int, taylor_guard: bool = False) -> None:
        self.names = names
        self.modules = modules
        self.io = io
        self.cursor = cursor
        self.residual = residual
        self.taylor = taylor
        self.taylor_guard = taylor_guard
        self.num_steps = num_steps
        # Scale-shift: per hooked block, per step, (scale, shift) already on the denoiser's device and dtype.
        self.affine: list[list[tuple[torch.Tensor, torch.Tensor] | None] | None] = [None] * len(names)
        self.probe: Callable | None = None  # fit_scale_shift's observer of reuse steps (None: never called)

    def set_affine(self, table: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]],
                   device: torch.device, dtype: torch.dtype) -> None:
        """Install per (block, step) 1-D scale and shift tensors, moved once to ``device``/``dtype``."""
        index = {name: i for i, name in enumerate(self.names)}
        affine: list[list | None] = [None] * len(self.names)
        for (block, step), (scale, shift) in table.items():
            i = index.get(block)
            if i is None:
                raise ScheduleError(f"scale_shift: block {block!r} never reuses in this schedule")
            if affine[i] is None:
                affine[i] = [None] * self.num_steps
                if self.io[i] is None:
                    self.io[i] = block_io_of(self.modules[i], path=block)
            affine[i][step] = (scale.to(device=device, dtype=dtype), shift.to(device=device, dtype=dtype))
        self.affine = affine

    def per_step(self) -> bool:
        """Whether a call's computation depends on the step beyond the row (Taylor factors, scale-shift)."""
        return self.taylor is not None or any(t is not None for t in self.affine)

    def make_forward(self, i: int, run: Callable) -> Callable:
        """The wrapper of block ``i`` around ``run`` (its original, maybe compiled, forward)."""
        cur = self.cursor
        residual = self.residual
        order = self.taylor

        def forward(*args: Any, **kwargs: Any) -> Any:
            act = cur.row[i]
            if act == RUN:
                return run(*args, **kwargs)
            if act == STORE:
                out = run(*args, **kwargs)
                if order is not None:
                    cur.store[i] = taylor_update(cur.store[i], out, cur.step, order)
                else:
                    cur.store[i] = self._delta(i, out, args, kwargs) if residual else out
                return out
            if act == REUSE:
                return self._reuse(i, run, args, kwargs)
            return self._split(i, act, run, args, kwargs)

        return forward

    def _adjust(self, i: int, out: Any) -> Any:
        """``out`` with Block Caching's per-channel ``scale * y + shift`` at this step, if the schedule has one."""
        table = self.affine[i]
        if table is None:
            return out
        pair = table[self.cursor.step]
        if pair is None:
            return out
        io = self.io[i]
        y = io.hidden_output(out)
        shape = [1] * y.ndim
        shape[io.channel_dim] = -1
        scale, shift = pair
        return io.replace_hidden_output(out, torch.addcmul(shift.view(shape), y, scale.view(shape)))

    def _delta(self, i: int, out: Any, args: tuple, kwargs: dict) -> Residual:
        return residual_of(self.io[i], self.names[i], out, args, kwargs)

    def _reuse(self, i: int, run: Callable, args: tuple, kwargs: dict) -> Any:
        stored = self.cursor.store[i]
        if stored is None:
            raise ScheduleError(f'blocks["{self.names[i]}"]: nothing stored to reuse (internal error)')
        if self.taylor is not None:
            out = taylor_forecast(stored, self.cursor.step, self.taylor_guard)
        elif not self.residual:
            out = stored
        else:
            out, delta, enc = stored
            out = add_residual(self.io[i], out, delta, enc, args, kwargs)
        if self.probe is not None:
            self.probe(i, self.cursor.step, out, run, args, kwargs)
        return self._adjust(i, out)

    def _split(self, i: int, acts: tuple[int, int], run: Callable, args: tuple, kwargs: dict) -> Any:
        # CFG batch = [uncond rows; cond rows]. One branch runs on its rows, the other reuses its rows.
        io = self.io[i]
        x = io.hidden_input(args, kwargs)
        if x is None:
            raise ScheduleError(f'blocks["{self.names[i]}"]: per-branch masks need a tensor input')
        batch = x.shape[0]
        half = batch // 2
        stored = self.cursor.store[i]
        parts = []
        store = False
        for (lo, hi), act in zip(((0, half), (half, batch)), acts):
            if act == REUSE:
                if self.residual:
                    out, delta, enc = stored
                    part = add_residual(io, tree_slice(out, lo, hi, batch), delta, enc, args, kwargs, slice(lo, hi))
                else:
                    part = tree_slice(stored, lo, hi, batch)
                part = self._adjust(i, part)
            else:
                part = run(*tree_slice(args, lo, hi, batch), **tree_slice(kwargs, lo, hi, batch))
                store = store or act == STORE
            parts.append(part)
        out = tree_cat(parts[0], parts[1])
        if store:
            self.cursor.store[i] = self._delta(i, out, args, kwargs) if self.residual else out
        return out
