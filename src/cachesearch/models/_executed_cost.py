"""The cost of what actually ran: MACs of the denoiser blocks that computed during a pipeline call.

A static cost model prices a schedule from its masks. Dynamic caches decide at run time (diffusers'
FirstBlockCache and MagCache, cache-dit's DBCache), so their cost can only be counted: :class:`ExecutedCost`
hooks the adapter's blocks and components (:func:`~cachesearch.models.block_space`) and the denoiser, records
which blocks computed in every denoiser call, and prices each call as

    other MACs + Σ over the blocks that computed of their *own* MACs

where a block's own MACs are its MACs minus those of the blocks directly inside it (the norms and projections
outside its components), so a block that ran with two of its three components cached costs its own part plus
the one component that ran. With full compute every block computes once per call and the sum is the call's
total; the cost ratio is executed MACs over the MACs of the same calls at full compute.

**What "computed" means.** Every cache we know replaces or wraps a module's ``forward``: diffusers' hooks
(``ModelHook.new_forward`` returns the cached or forecast value without calling the original), cache-dit's
``UnifiedBlocks`` (skips the blocks' calls), cachesearch's applier (an instance ``forward`` wrapper). In all of
them the module is still *called*, so a torch forward hook on it fires for a cached step too and counting calls
would be wrong. A module is counted as having computed in a call when a torch function read one of the model's
parameters (``nn.Parameter``: a ``Linear``'s weight, a norm's scale) between the module's pre- and post-forward
hooks, seen by a :class:`~torch.overrides.TorchFunctionMode` active while counting. Returning a stored tensor,
adding a residual or evaluating a Taylor forecast reads no parameter; computing any block does (this also holds
for a block that is itself a leaf ``Linear``, such as FLUX's ``proj_mlp``, whose ``__call__`` fires hooks
whether or not its forward is replaced). Element-wise work has no MACs in this cost model (see :mod:`._cost`),
so the caches' own bookkeeping (residual differences, forecasts) counts zero, as it does for cachesearch's
schedules.

**Per-call MACs.** Either from a given :class:`~cachesearch.schedule.BlockSpace` with MACs (the evaluator's
space: the same numbers its analytic ``cost_ratio`` uses), or, by default, measured for the shapes that
actually ran: the first call with a new input signature is replayed once on a ``meta``-device replica of the
denoiser under :func:`~._cost.module_macs` (nothing is computed). ``flop_check=True`` also counts the real
FLOPs of every call with :class:`torch.utils.flop_counter.FlopCounterMode` (slow; for tests and spot checks):
with per-call MACs at the shapes that ran the two counts agree exactly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from ..schedule import BlockKind, BlockSpace

__all__ = ["ExecutedCost", "ExecutedCostReport"]


@dataclass(frozen=True)
class ExecutedCostReport:
    """What :class:`ExecutedCost` counted.

    Attributes:
        calls: denoiser calls observed.
        runs: for every block and component, the number of calls in which it computed.
        executed_macs: MACs of what computed, summed over the calls.
        full_macs: MACs of the same calls at full compute.
        flop_counter_macs: the MACs :class:`~torch.utils.flop_counter.FlopCounterMode` counted inside the
            denoiser calls (``None`` without ``flop_check``).
    """

    calls: int
    runs: dict[str, int] = field(default_factory=dict)
    executed_macs: int = 0
    full_macs: int = 0
    flop_counter_macs: int | None = None

    def ratio(self, reference_calls: int | None = None) -> float:
        """Executed MACs over full compute: of the observed calls, or of ``reference_calls`` calls at the
        average full cost of one observed call (a schedule that skips whole steps makes fewer calls than the
        reference it is compared with).

        Raises:
            ValueError: nothing was counted.
        """
        if self.calls == 0 or self.full_macs <= 0:
            raise ValueError("no denoiser call was counted; run the pipeline inside ExecutedCost.counting()")
        full = self.full_macs if reference_calls is None else self.full_macs / self.calls * reference_calls
        return self.executed_macs / full

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``ratio`` of the observed calls included)."""
        return {"calls": self.calls, "runs": dict(self.runs), "executed_macs": self.executed_macs,
                "full_macs": self.full_macs, "cost_ratio": self.ratio() if self.calls else None,
                "flop_counter_macs": self.flop_counter_macs}


def _meta_like(value: Any) -> Any:
    """``value`` with every tensor replaced by an empty ``meta`` tensor of its shape and dtype."""
    if isinstance(value, torch.Tensor):
        return torch.empty(value.shape, dtype=value.dtype, device="meta")
    if isinstance(value, (list, tuple)):
        return type(value)(_meta_like(v) for v in value)
    if isinstance(value, dict):
        return {k: _meta_like(v) for k, v in value.items()}
    return value


def _signature(value: Any) -> Any:
    """A hashable key of the shapes and dtypes of the tensors in ``value`` (other values by type)."""
    if isinstance(value, torch.Tensor):
        return ("t", tuple(value.shape), str(value.dtype))
    if isinstance(value, (list, tuple)):
        return tuple(_signature(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _signature(v)) for k, v in value.items()))
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return type(value).__name__


class _ParameterUses(TorchFunctionMode):
    """Counts torch function calls that take an ``nn.Parameter`` (positionally or by keyword)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if any(isinstance(a, torch.nn.Parameter) for a in args) or any(
            isinstance(v, torch.nn.Parameter) for v in kwargs.values()
        ):
            self.count += 1
        return func(*args, **kwargs)


@dataclass
class _CallCosts:
    own: dict[str, int]
    other: int
    full: int


class ExecutedCost:
    """Count the MACs that executed in the calls of ``denoiser`` made inside :meth:`counting`.

    Args:
        denoiser: a denoiser with a cachesearch adapter (``pipe.transformer``, ``pipe.unet``). Its blocks are
            resolved here, by path, so construct this before a cache that renames or wraps them is enabled
            (hooks follow the module objects, whatever the cache does to the tree afterwards).
        space: per-block MACs to use (a :class:`BlockSpace` with MACs, e.g. the evaluator's ``ev.space``);
            default: measured at the input shapes of the calls that ran (see the module docstring).
        flop_check: also count the real FLOPs of every denoiser call (:class:`FlopCounterMode`).

    Example::

        counter = ExecutedCost(pipe.transformer)
        pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold=0.2))
        with counter.counting():
            pipe(prompt, num_inference_steps=28)
        print(counter.report().ratio())
    """

    def __init__(self, denoiser: torch.nn.Module, *, space: BlockSpace | None = None,
                 flop_check: bool = False) -> None:
        from ..adapters import adapter_for

        adapter_for(denoiser)  # refuses a denoiser without an adapter, with the adapter's message
        self.denoiser = denoiser
        self.flop_check = bool(flop_check)
        self._costed_space = space
        if space is not None and (space.other_macs is None or any(b.macs is None for b in space.blocks)):
            raise ValueError("space: every block needs MACs; build it with block_space(denoiser, with_costs=True)")
        self.space = space if space is not None else _structure(denoiser)
        self.blocks: tuple[str, ...] = tuple(b.name for b in self.space.blocks)
        self._modules = {name: denoiser.get_submodule(name) for name in self.blocks}
        self._costs: dict[Any, _CallCosts] = {}
        self._first_space: BlockSpace | None = None
        self._flop_counter: Any = None
        self.reset()

    # -- counting ------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything counted so far (per-call MACs already measured are kept)."""
        self._calls = 0
        self._runs = dict.fromkeys(self.blocks, 0)
        self._executed = 0
        self._full = 0
        self._flops = 0
        self._uses = _ParameterUses()
        self._in_call: list[dict[str, int]] = []  # stack of per-call run counts (re-entrant calls are nested)
        self._entered: dict[str, list[int]] = {n: [] for n in self.blocks}
        self._call_keys: list[Any] = []
        self._flop_marks: list[int] = []

    @contextlib.contextmanager
    def counting(self) -> Iterator[ExecutedCost]:
        """Hooks installed for the ``with`` body (removed afterwards, also on errors); counts accumulate
        across ``with`` blocks until :meth:`reset`."""
        handles: list[Any] = []
        try:
            for name, module in self._modules.items():
                handles.append(module.register_forward_pre_hook(self._enter_hook(name)))
                handles.append(module.register_forward_hook(self._exit_hook(name)))
            handles.append(self.denoiser.register_forward_pre_hook(self._on_call, with_kwargs=True))
            handles.append(self.denoiser.register_forward_hook(self._on_return))
            with contextlib.ExitStack() as stack:
                if self.flop_check:
                    from torch.utils.flop_counter import FlopCounterMode

                    from ._cost import attention_flop_mapping

                    self._flop_counter = FlopCounterMode(display=False, custom_mapping=attention_flop_mapping())
                    stack.enter_context(self._flop_counter)
                stack.enter_context(self._uses)
                yield self
        finally:
            for h in handles:
                h.remove()
            self._flop_counter = None
            self._in_call.clear()
            self._call_keys.clear()
            self._flop_marks.clear()
            for stack_ in self._entered.values():
                stack_.clear()

    def _enter_hook(self, name: str) -> Any:
        def pre(_module: torch.nn.Module, _args: Any) -> None:
            self._entered[name].append(self._uses.count)

        return pre

    def _exit_hook(self, name: str) -> Any:
        def post(_module: torch.nn.Module, _args: Any, _output: Any) -> None:
            start = self._entered[name].pop() if self._entered[name] else self._uses.count
            if self._uses.count > start and self._in_call:
                self._in_call[-1][name] = self._in_call[-1].get(name, 0) + 1

        return post

    def _on_call(self, _module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        key = _signature((args, kwargs))
        if key not in self._costs:
            self._costs[key] = self._measure_costs(args, kwargs)
        self._call_keys.append(key)
        self._in_call.append({})
        if self._flop_counter is not None:
            self._flop_marks.append(self._flop_counter.get_total_flops())

    def _on_return(self, _module: torch.nn.Module, _args: Any, _output: Any) -> None:
        if not self._in_call:
            return
        ran = self._in_call.pop()
        costs = self._costs[self._call_keys.pop()]
        self._calls += 1
        self._full += costs.full
        self._executed += costs.other + sum(n * costs.own[name] for name, n in ran.items())
        for name, n in ran.items():
            self._runs[name] += n
        if self._flop_counter is not None and self._flop_marks:
            self._flops += self._flop_counter.get_total_flops() - self._flop_marks.pop()

    # -- costs ---------------------------------------------------------------------------------------------
    def _measure_costs(self, args: tuple, kwargs: dict) -> _CallCosts:
        """Own MACs per block and other MACs of one call with these inputs."""
        if self._costed_space is not None:
            return _own_costs(self._costed_space)
        from ._cost import _meta_replica, module_macs

        replica = _meta_replica(self.denoiser)
        margs, mkwargs = _meta_like(args), _meta_like(kwargs)
        try:
            report = module_macs(replica, lambda: replica(*margs, **mkwargs), list(self.blocks))
        except Exception as e:  # noqa: BLE001 - re-raised with what to do
            raise RuntimeError(
                f"ExecutedCost: could not replay a {type(self.denoiser).__name__} call on the meta device to cost "
                f"its blocks ({type(e).__name__}: {e}); pass space=block_space(denoiser, with_costs=True)"
            ) from e
        space = self.space
        costed = BlockSpace(family=space.family, other_macs=report.other_macs,
                            deepcache_branches=space.deepcache_branches,
                            blocks=tuple(replace(b, macs=int(report.per_module[b.name])) for b in space.blocks))
        if self._first_space is None:
            self._first_space = costed
        return _own_costs(costed)

    def costed_space(self) -> BlockSpace | None:
        """The block space with the per-call MACs of the first signature measured (``None`` before any call);
        its analytic ``cost_ratio`` of a mask is what this counter measures for a static schedule."""
        if self._costed_space is not None:
            return self._costed_space
        return self._first_space

    # -- results -------------------------------------------------------------------------------------------
    def report(self) -> ExecutedCostReport:
        """What was counted so far."""
        return ExecutedCostReport(
            calls=self._calls, runs=dict(self._runs), executed_macs=int(self._executed), full_macs=int(self._full),
            flop_counter_macs=(self._flops // 2) if self.flop_check else None,
        )


def _structure(denoiser: torch.nn.Module) -> BlockSpace:
    """The adapter's block space of ``denoiser`` with components (no MACs)."""
    from ._space import block_space

    return block_space(denoiser)


def _own_costs(space: BlockSpace) -> _CallCosts:
    """Own MACs of every block (its MACs minus its direct children's), other MACs and the full per-call MACs."""
    own: dict[str, int] = {}
    for b in space.blocks:
        kids = space.children(b.name)
        own[b.name] = max(int(b.macs or 0) - sum(int(space.get(k).macs or 0) for k in kids), 0)
    stages = [b for b in space.blocks if b.kind is BlockKind.STAGE]
    other = int(space.other_macs or 0)
    return _CallCosts(own=own, other=other, full=other + sum(int(b.macs or 0) for b in stages))
