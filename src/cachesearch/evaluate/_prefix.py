"""Exact prefix sharing: a candidate whose masks agree with an earlier one's on the first k steps starts from that
candidate's state after step k instead of computing those steps again.

Two schedules of one evaluator with the same step set and reuse mode whose masks reuse the same blocks at each of
the steps ``0 … k-1`` compute the same thing in those steps, bit for bit: the denoiser sees the same inputs and
its blocks run or reuse alike. What a candidate needs after step k is the latents and the scheduler's state,
which follow from the denoiser's outputs of the prefix calls, and what its blocks have stored. So for every
batch a candidate runs, :class:`PrefixCache` keeps the denoiser's output of each call and, at the start of each
step, what the schedule's blocks had stored (references to the runtime's own objects, which it replaces and
never changes). A later candidate resumes from the longest matching prefix inside the pipeline's own loop: for
the prefix calls its denoiser returns the recorded outputs without computing (the pipeline's scheduler steps run
as they did, so latents, scheduler state and a stochastic sampler's noise draws come out identical), then its
blocks get the stored values and the denoiser runs for real. Nothing is copied or read back from the device.

Stored values are shared only where they are provably the same. A block the later schedule wraps must have had
the same actions (run, run and store, reuse) on the prefix steps in both schedules — a block the earlier
schedule did not wrap only ran — unless it does not reuse at step k (it recomputes before it reads anything;
Taylor forecasts excepted, which difference over every earlier recompute). Latency measurements and schedules
with a fitted scale-shift never share. The cache keeps the most recently used batches within a byte budget.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from cachesearch.runtime import AppliedSchedule
from cachesearch.runtime._table import REUSE, RUN
from cachesearch.schedule import ReuseMode, Schedule

__all__ = ["BatchRun", "PrefixCache", "PrefixStats"]

@dataclass
class PrefixStats:
    """What prefix sharing did in one evaluator: batches run, how many resumed, and denoiser calls replayed."""

    batches: int = 0
    resumed: int = 0
    calls: int = 0
    calls_replayed: int = 0

    def to_dict(self) -> dict[str, int]:
        """Plain form."""
        return {"batches": self.batches, "resumed": self.resumed, "calls": self.calls,
                "calls_replayed": self.calls_replayed}


@dataclass
class _Entry:
    """One batch one schedule ran: the denoiser's output per call and the stored values at the start of each step
    from ``first_step`` on."""

    step_of_call: tuple[int, ...]
    actions: dict[str, tuple]
    taylor: bool
    outputs: list[Any]
    stores: dict[int, dict[str, Any]]
    nbytes: int = 0


@dataclass
class BatchRun:
    """One batch of one schedule under a :class:`PrefixCache`: ``resume_call`` is the first denoiser call it
    computed (0: none replayed); ``calls`` how many calls the pipeline made."""

    resume_call: int = 0
    calls: int = 0
    source: _Entry | None = None
    resume_step: int = 0
    outputs: list[Any] = field(default_factory=list)
    stores: dict[int, dict[str, Any]] = field(default_factory=dict)
    actions: dict[str, tuple] = field(default_factory=dict)
    branch: str | None = None
    single: bool = True


def _leaves(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _leaves(o)
    elif isinstance(obj, Mapping):
        for o in obj.values():
            yield from _leaves(o)


def _nbytes(*objs: Any) -> int:
    seen: dict[tuple[str, int], int] = {}
    for obj in objs:
        for t in _leaves(obj):
            storage = t.untyped_storage()
            seen[(str(t.device), storage.data_ptr())] = storage.nbytes()
    return sum(seen.values())


def _reuses(action: Any) -> bool:
    return action == REUSE or (isinstance(action, tuple) and REUSE in action)


class PrefixCache:
    """Denoiser outputs and stored block values of recent batches, to resume later candidates from their longest
    shared prefix (see the module docstring). ``max_bytes`` bounds the tensors kept (least recently used batches
    go first); 0 disables sharing."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self.stats = PrefixStats()
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._index: dict[bytes, list[tuple[int, int]]] = {}
        self._bytes = 0
        self._next_id = 0

    @property
    def enabled(self) -> bool:
        """Whether sharing is on (a positive byte budget)."""
        return self.max_bytes > 0

    @property
    def nbytes(self) -> int:
        """Bytes of the tensors the cache keeps now (each batch counted on its own)."""
        return self._bytes

    @staticmethod
    def shareable(schedule: Schedule) -> bool:
        """Whether ``schedule`` may share prefixes (not with a fitted scale-shift)."""
        return schedule.scale_shift is None

    @staticmethod
    def _prefix_keys(schedule: Schedule, context: tuple) -> list[bytes]:
        """``keys[k]``: the identity of steps ``0 … k-1`` (which blocks reuse, per branch) in ``context``."""
        h = hashlib.sha1(repr((context, schedule.reuse.value, schedule.taylor_order, schedule.taylor_guard)).encode())
        keys = [h.digest()]
        for s in range(schedule.num_steps):
            row = sorted((bm.block, branch) for bm in schedule.blocks
                         for branch, mask in (("cond", bm.cond), ("uncond", bm.uncond)) if mask[s] != "R")
            h.update(repr(row).encode())
            keys.append(h.digest())
        return keys

    @contextlib.contextmanager
    def batch(self, schedule: Schedule, applied: AppliedSchedule, called: torch.nn.Module, context: tuple,
              step_of_call: list[int]) -> Iterator[BatchRun]:
        """Run one pipeline call of ``schedule`` (applied as ``applied``; ``called`` is the module the pipeline
        calls) inside this context: it resumes from the longest shared prefix of the batch ``context`` (split,
        image range, pipeline arguments) and records this batch for later candidates once the call returns."""
        # two experts: calls to the second one would not be seen here; side calls (KV-cache prefill or capture)
        # are no steps, so this hook's call count would not be the step
        if not applied.single_denoiser or applied.side_calls:
            yield BatchRun()
            return
        keys = self._prefix_keys(schedule, context)
        taylor = schedule.reuse is ReuseMode.TAYLOR
        calls = tuple(step_of_call)
        first_call = {s: calls.index(s) for s in sorted(set(calls))}
        run = BatchRun()

        def pre_hook(_module: torch.nn.Module, _args: Any) -> None:
            c = run.calls
            run.calls += 1
            if c == 0:
                run.branch = applied.branch()
                run.actions = applied.run_actions()
                self._find(run, keys, calls, taylor)
            elif applied.branch() != run.branch:  # separate CFG passes: more calls than steps; not shared
                run.single = False
            if run.source is not None and c == run.resume_call:
                src = run.source.stores[run.resume_step]
                applied.load_stored({b: src[b] for b in applied.hooked_blocks if b in src})
            s = calls[c] if c < len(calls) and run.single else -1
            if s >= max(run.resume_step, 1) and first_call.get(s) == c:
                run.stores[s] = applied.stored()

        def post_hook(_module: torch.nn.Module, _args: Any, output: Any) -> None:
            run.outputs.append(output)

        had = "forward" in called.__dict__
        original = called.forward

        def forward(*args: Any, **kwargs: Any) -> Any:
            c = run.calls - 1  # the pre-hook counted this call
            if run.source is not None and c < run.resume_call:
                return run.source.outputs[c]
            return original(*args, **kwargs)

        handles = [called.register_forward_pre_hook(pre_hook), called.register_forward_hook(post_hook)]
        called.forward = forward
        ok = False
        try:
            yield run
            ok = True
        finally:
            for h in handles:
                h.remove()
            if had:
                called.forward = original
            else:
                called.__dict__.pop("forward", None)
        self.stats.batches += 1
        self.stats.calls += run.calls
        if run.source is not None:
            self.stats.resumed += 1
            self.stats.calls_replayed += run.resume_call
        if ok and run.single and run.calls == len(calls) and len(run.outputs) == len(calls):
            self._add(run, keys, calls, taylor)

    def around(self, schedule: Schedule, applied: AppliedSchedule, called: torch.nn.Module, context: Any,
               step_of_call: list[int], batches: list[tuple[int, int]], *, images: tuple[int, int],
               batch_size: int) -> Callable[[int], Any]:
        """``around(lo)``: the context the pipeline call of the batch of ``images`` (``[first, stop)``, in batches
        of ``batch_size``) that starts at image ``lo`` runs in (:meth:`batch`, with ``context`` and the image range
        as the batch's identity); appends ``(images, first call computed)`` of each batch to ``batches``."""

        @contextlib.contextmanager
        def run(lo: int) -> Iterator[None]:
            hi = min(lo + batch_size, images[1])
            with self.batch(schedule, applied, called, (repr(context), lo, hi), step_of_call) as b:
                yield
            batches.append((hi - lo, b.resume_call))

        return run

    # -- lookup and bookkeeping ------------------------------------------------------------------------------
    def _compatible(self, entry: _Entry, run: BatchRun, k: int, taylor: bool) -> bool:
        """Whether ``entry``'s stored values at the start of step ``k`` are the ones ``run``'s schedule has there."""
        if k not in entry.stores:
            return False
        for block, mine in run.actions.items():
            if not taylor and not _reuses(mine[k]):
                continue  # it recomputes at k before it reads anything
            theirs = entry.actions.get(block)
            if theirs is None:
                if any(a != RUN for a in mine[:k]):  # unwrapped there: it only ran
                    return False
            elif theirs[:k] != mine[:k]:
                return False
        return True

    def _find(self, run: BatchRun, keys: list[bytes], calls: tuple[int, ...], taylor: bool) -> None:
        for k in range(len(keys) - 2, 0, -1):
            for entry_id, _ in reversed(self._index.get(keys[k], ())):
                entry = self._entries.get(entry_id)
                if entry is None or entry.step_of_call != calls or entry.taylor != taylor:
                    continue
                if self._compatible(entry, run, k, taylor):
                    self._entries.move_to_end(entry_id)
                    run.source, run.resume_step, run.resume_call = entry, k, calls.index(k)
                    return

    def _add(self, run: BatchRun, keys: list[bytes], calls: tuple[int, ...], taylor: bool) -> None:
        entry = _Entry(step_of_call=calls, actions=run.actions, taylor=taylor, outputs=run.outputs,
                       stores=run.stores)
        entry.nbytes = _nbytes(run.outputs, list(run.stores.values()))
        if entry.nbytes > self.max_bytes:
            return
        entry_id = self._next_id
        self._next_id += 1
        self._entries[entry_id] = entry
        self._bytes += entry.nbytes
        for k in run.stores:
            self._index.setdefault(keys[k], []).append((entry_id, k))
        while self._bytes > self.max_bytes and self._entries:
            old_id, old = self._entries.popitem(last=False)
            self._bytes -= old.nbytes
        if len(self._index) > 4 * len(self._entries) * max(1, len(keys)):
            self._prune()

    def _prune(self) -> None:
        for key in list(self._index):
            live = [(i, k) for i, k in self._index[key] if i in self._entries]
            if live:
                self._index[key] = live
            else:
                del self._index[key]
