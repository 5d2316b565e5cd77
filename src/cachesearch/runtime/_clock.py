"""Step accounting per cache branch: which sampler step each denoiser call is, from call counts alone.

Pipelines that run classifier-free guidance as two passes (Wan, HunyuanVideo, Qwen-Image, FLUX with
``true_cfg_scale > 1``) wrap each pass in ``denoiser.cache_context("cond")`` / ``("uncond")``, and diffusers' hooks
keep one state per context name (``StateManager``). The clock does the same: every *branch* (context name) has its
own call counter, action rows and stored outputs, so the cond pass reuses what the cond pass stored. Calls outside
any context (and LTX/CogVideoX's batched ``"cond_uncond"``) share the default branch, which runs the batched
``[uncond; cond]`` rows when the pipeline guides in one batch.

Two experts (Wan 2.2 A14B: ``transformer`` for the high-noise steps, ``transformer_2`` for the rest) share the
branches' counters: a step's row goes to whichever expert runs it, and the step an expert takes over recomputes
every block (nothing of that expert is stored yet), as the first step of a run does.

The block wrappers read one :class:`Cursor` (row, step, store) that the denoiser's pre-hook points at the running
branch: a dict lookup and three attribute writes per denoiser call, nothing per block, no timestep read.

A call *beside* the steps (a KV-cache prefill or capture that the family's :class:`~cachesearch.adapters.CallRoles`
recognise from its arguments: Wan-Animate 2's reference pass, SANA-WM's refiner captures) is no step: every block
recomputes (it writes its part of the KV cache), no output of it is stored (it sees other tokens than the steps: a
stored output or a Taylor difference from it would be wrong at the next step), and no branch's counter moves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..schedule import ScheduleError
from ._table import RUN

__all__ = ["BATCHED", "COND", "UNCOND", "Branch", "Clock", "Cursor", "mode_of_context"]

COND, UNCOND, BATCHED = "cond", "uncond", "cfg"
"""Which masks a branch's rows follow: the cond masks, the uncond masks, or both halves of a CFG batch."""

_MODES = {"cond": COND, "pred_cond": COND, "uncond": UNCOND, "pred_uncond": UNCOND}  # pipelines' and guiders' names
_DEFAULT = (None, "cond_uncond")  # no context; LTX/CogVideoX run the batched CFG call in "cond_uncond"


def mode_of_context(name: str | None) -> str | None:
    """The masks a context's calls follow (``None``: the default branch, batched or not per the pipeline)."""
    if name in _DEFAULT:
        return None
    return _MODES.get(name, COND)


class Cursor:
    """What every block wrapper reads: the running branch's action row, step and stored outputs."""

    __slots__ = ("row", "step", "store")

    def __init__(self, n_blocks: int) -> None:
        self.row: tuple = ()
        self.step = 0
        self.store: list[Any] = [None] * n_blocks


class Branch:
    """One cache context's state within a sampling loop (persistent objects: reset, never replaced)."""

    __slots__ = ("call", "expert", "mode", "name", "rows", "started", "store")

    def __init__(self, name: str | None, n_blocks: int) -> None:
        self.name = name
        self.mode = COND
        self.call = -1
        self.expert: Any = None
        self.rows: list[tuple] = []
        self.started = False
        self.store: list[Any] = [None] * n_blocks


class Clock:
    """Call counting for one applied schedule.

    Args:
        n_blocks: hooked blocks (length of a row and of a store).
        table: ``table(first_row, mode)`` → action rows of a run whose first row recomputes everything.
        default_mode: the default branch's mode for the run about to start (:data:`BATCHED` or :data:`COND`).
        per_branch_block: the first block with different cond/uncond masks, ``None`` for a shared schedule.
    """

    def __init__(self, n_blocks: int, table: Callable[[int, str], list[tuple]], default_mode: Callable[[], str],
                 per_branch_block: str | None) -> None:
        self.cursor = Cursor(n_blocks)
        self.context: str | None = None  # set by the denoiser's patched cache_context
        self._run_all: tuple = (RUN,) * n_blocks  # what a side call does
        self.step_of_call: list[int] | None = None
        self._n = n_blocks
        self._table = table
        self._default_mode = default_mode
        self._per_branch = per_branch_block
        self._begin = 0
        self._branches: dict[str | None, Branch] = {}
        self._running: Branch | None = None

    def new_run(self, step_of_call: list[int]) -> None:
        """A new sampling loop (``scheduler.set_timesteps``): every branch starts over."""
        self.step_of_call = step_of_call
        self._begin = 0
        self._running = None
        for b in self._branches.values():
            self._reset(b)
        self.cursor.store = [None] * self._n

    def clear(self) -> None:
        """Drop every stored output (``remove()``)."""
        for b in self._branches.values():
            self._reset(b)
        self.cursor.store = [None] * self._n

    def _reset(self, b: Branch) -> None:
        b.call, b.expert, b.rows, b.started = -1, None, [], False
        b.store = [None] * self._n

    def begin_at(self, begin_call: int) -> None:
        """The loop runs only calls ``begin_call`` onwards (img2img, inpaint); nothing may have run yet."""
        if self.step_of_call is None or not 0 <= begin_call < len(self.step_of_call):
            return
        if any(b.started and b.call != begin_call - 1 for b in self._branches.values()):
            raise ScheduleError(
                "the sampler's begin index was set after the denoiser already ran in this loop; cachesearch "
                "cannot align the schedule's steps"
            )
        self._begin = begin_call
        for b in self._branches.values():
            if b.started:
                self._start(b)

    def running(self) -> Branch:
        """The branch of the latest step call (before any in this loop: the one the current context names)."""
        return self._running if self._running is not None else self._branch()

    def _branch(self, named: str | None = None) -> Branch:
        context = self.context if self.context is not None else named
        name = context if mode_of_context(context) is not None else None
        b = self._branches.get(name)
        if b is None:
            mode = mode_of_context(name)
            if mode is not None and name not in _MODES and self._per_branch is not None:
                raise ScheduleError(
                    f'blocks["{self._per_branch}"]: per-branch (cond/uncond) masks, but the pipeline runs a pass in '
                    f"cache context {name!r}, which is neither; give both branches one mask"
                )
            b = self._branches[name] = Branch(name, self._n)
        return b

    def _start(self, b: Branch) -> None:
        mode = mode_of_context(b.name)
        b.mode = self._default_mode() if mode is None else mode
        if b.mode == COND and b.name is None and self._per_branch is not None:
            raise ScheduleError(
                f'blocks["{self._per_branch}"]: per-branch (cond/uncond) masks, but the denoiser is called without '
                f"classifier-free guidance (no [uncond; cond] batch, no cache_context('uncond') pass); run the "
                f"pipeline with guidance (or apply with cfg=True to a bare denoiser fed CFG batches), or give both "
                f"branches one mask"
            )
        b.call = self._begin - 1
        b.rows = self._table(self.step_of_call[self._begin], b.mode)
        b.store = [None] * self._n
        b.expert = None
        b.started = True

    def side_call(self) -> None:
        """A call beside the sampler steps: point the cursor at a row where every block runs (nothing is read from
        or written to any store; no branch advances)."""
        self.cursor.row = self._run_all

    def on_call(self, expert: Any, *, wrap: bool, where: str, branch: str | None = None) -> None:
        """Advance the running branch by one call of ``expert`` and point the cursor at its row.

        Args:
            wrap: a bare denoiser: after the last call of a loop, the next call starts the branch's next loop;
                else (a pipeline) one call too many raises.
            where: how errors name the schedule's steps.
            branch: the CFG pass the call's arguments name (``"cond"`` / ``"uncond"``), used outside any cache
                context (a context the pipeline entered wins).
        """
        b = self._running = self._branch(branch)
        if not b.started:
            self._start(b)
        b.call += 1
        if b.call >= len(self.step_of_call):
            if not wrap:
                raise ScheduleError(
                    f"the denoiser was called more than the {len(self.step_of_call)} times this sampler makes "
                    f"for {where} in cache context {b.name!r}; the schedule cannot be aligned with the steps"
                    if b.name is not None else
                    f"the denoiser was called more than the {len(self.step_of_call)} times this sampler makes "
                    f"for {where}; the schedule cannot be aligned with the steps"
                )
            self._start(b)
            b.call = 0
        step = self.step_of_call[b.call]
        if b.expert is not expert:
            if b.expert is not None:  # the other expert takes over: it has nothing stored, so it recomputes all
                b.rows = self._table(step, b.mode)
                b.store = [None] * self._n
            b.expert = expert
        if b.mode == COND and self._per_branch is not None and b.call > self._begin:
            uncond = [o for o in self._branches.values() if o.started and o.mode == UNCOND]
            if not uncond:
                raise ScheduleError(
                    f'blocks["{self._per_branch}"]: per-branch (cond/uncond) masks, but this pipeline call runs '
                    f"no unconditional pass (no classifier-free guidance); call it with guidance (e.g. a negative "
                    f"prompt and true_cfg_scale > 1 / guidance_scale > 1), or give both branches one mask"
                )
        cur = self.cursor
        cur.row = b.rows[step]
        cur.step = step
        cur.store = b.store

    def ran(self) -> bool:
        """Whether any branch has run a call in this loop."""
        return any(b.started for b in self._branches.values())
