"""Install a schedule on a diffusers pipeline: per-instance forward wrappers on the listed blocks.

At apply time every (step, block) cell is turned into an action (run, run and store, reuse, or a per-CFG-
branch split), so a block wrapper only indexes a tuple. Steps are counted from denoiser calls (a forward
pre-hook) and reset when the pipeline calls ``scheduler.set_timesteps``: nothing reads timestep values, so
the hot path never synchronises with the device.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from ..adapters import BlockIO, adapter_for, block_io_of, denoiser_of
from ..schedule import ReuseMode, Schedule, ScheduleError, architecture_fingerprint, fingerprint_mismatch
from ._compiling import compile_scope, pattern_compiled_forward, warn_if_too_many_patterns
from ._patches import Patches
from ._residual import Residual, add_residual, residual_of
from ._steps import steps_of_calls
from ._table import REUSE, RUN, STORE, action_rows
from ._taylor import taylor_forecast, taylor_update
from ._tree import tree_cat, tree_slice

__all__ = ["AppliedSchedule", "apply_schedule", "denoiser_of", "fingerprint_module"]

_HANDLE_ATTR = "_cachesearch_applied"


def _uncompiled(module: torch.nn.Module) -> torch.nn.Module:
    """The module inside a ``torch.compile(module)`` wrapper (``OptimizedModule``), else ``module``."""
    inner = getattr(module, "_orig_mod", None)
    return inner if isinstance(inner, torch.nn.Module) and type(module).__name__ == "OptimizedModule" else module


def fingerprint_module(module: torch.nn.Module) -> str:
    """Architecture fingerprint of a denoiser (class, config, parameter names and shapes)."""
    config = dict(getattr(module, "config", {}) or {})
    params = ((n, tuple(p.shape)) for n, p in module.named_parameters())
    return architecture_fingerprint(type(module).__name__, config, params)


class _State:
    """Mutable per-run state shared by the wrappers of one applied schedule."""

    __slots__ = ("call", "row", "rows", "step", "step_of_call", "store")

    def __init__(self, n_blocks: int) -> None:
        self.call = -1
        self.step = 0
        self.row: tuple = ()
        self.rows: list[tuple] = []
        self.step_of_call: list[int] | None = None
        self.store: list[Any] = [None] * n_blocks


class AppliedSchedule:
    """Handle of a schedule installed on a pipeline; ``remove()`` restores the original modules exactly.

    With a pipeline, every call (``scheduler.set_timesteps``) starts a new run. A bare denoiser must be
    called once per step; after ``num_steps`` calls the next call starts a new run (or call :meth:`reset`).

    Use as a context manager (``with sched.applied(pipe): ...``) or call :meth:`remove` yourself.
    """

    def __init__(
        self,
        schedule: Schedule,
        target: Any,
        *,
        force: bool = False,
        compile: bool | str | dict[str, Any] = False,
        cfg: bool | None = None,
    ) -> None:
        self.schedule = schedule
        self._cfg = cfg
        called = denoiser_of(target)  # what the pipeline calls: maybe a torch.compile wrapper
        self.denoiser = _uncompiled(called)
        self.pipe = target if target is not called else None
        if getattr(self.denoiser, _HANDLE_ATTR, None) is not None:
            raise ScheduleError("a schedule is already applied to this denoiser; remove() it first")
        self._check_fingerprint(force)
        self._check_scheduler()
        self._residual = schedule.reuse is ReuseMode.RESIDUAL
        self._taylor = schedule.taylor_order if schedule.reuse is ReuseMode.TAYLOR else None
        self._removed = False

        for bm in schedule.blocks:  # every listed block must exist, hooked or not
            self._module(bm.block)
        self._check_blocks()
        # Only blocks that ever reuse need a wrapper: an all-R block runs untouched.
        hooked = [bm for bm in schedule.blocks if "." in bm.cond or "." in bm.uncond]
        self._names = [bm.block for bm in hooked]
        self._modules = [self._module(bm.block) for bm in hooked]
        # Residual reuse and per-branch masks read the hidden state: the adapter's I/O contract says where.
        adjusted = set(schedule.scale_shift.blocks()) if schedule.scale_shift is not None else set()
        self._io: list[BlockIO | None] = [
            block_io_of(m, path=bm.block) if self._residual or not bm.shared or bm.block in adjusted else None
            for bm, m in zip(hooked, self._modules)
        ]
        self._hooked = hooked
        # Scale-shift: per hooked block, per step, (scale, shift) already on the denoiser's device and dtype.
        self._affine: list[list[tuple[torch.Tensor, torch.Tensor] | None] | None] = [None] * len(hooked)
        self._probe: Callable | None = None  # fit_scale_shift's observer of reuse steps (None: never called)
        if schedule.scale_shift is not None:
            self._set_affine({k: tuple(torch.from_numpy(a.copy()) for a in v)
                              for k, v in schedule.scale_shift.entries.items()})
        self._tables: dict[tuple[int, bool], list[tuple]] = {}  # (first row run, cfg) -> action rows
        self._state = _State(len(hooked))

        self._patches = Patches(describe=self._where)
        self._scheduler = None
        self._pre_hook = None
        scope, options = compile_scope(compile)
        try:
            for i, module in enumerate(self._modules):
                self._wrap(i, module, options if scope == "blocks" else False)
            if scope == "denoiser":
                if called is not self.denoiser or "forward" in self.denoiser.__dict__:
                    raise ScheduleError(
                        "compile='denoiser' compiles the denoiser itself: apply it to an uncompiled denoiser whose "
                        "forward nothing else has replaced"
                    )
                # affine tensors and Taylor coefficients differ per step
                per_step = self._taylor is not None or any(t is not None for t in self._affine)
                state = self._state
                make, self.compiled_variants = pattern_compiled_forward(
                    self.denoiser, (lambda: (state.row, state.step)) if per_step else (lambda: state.row), options
                )
                self._patches.patch(self.denoiser, "forward", make)
            # On the module the pipeline calls, so that under torch.compile(unet) the step counting runs outside
            # the compiled frame; kept out of dynamo under unet.compile() too (see _on_denoiser_call).
            self._pre_hook = called.register_forward_pre_hook(self._on_denoiser_call)
            if self.pipe is not None and getattr(self.pipe, "scheduler", None) is not None:
                self._wrap_scheduler(self.pipe.scheduler)
            setattr(self.denoiser, _HANDLE_ATTR, self)
        except BaseException:
            self.remove()
            raise
        if called is not self.denoiser or getattr(self.denoiser, "_compiled_call_impl", None) is not None:
            warn_if_too_many_patterns(self.schedule.name, self.row_patterns())

    def row_patterns(self) -> int:
        """Distinct action rows of a full-length run (with and without CFG, whichever has more): the number of
        graphs a whole-denoiser ``torch.compile`` builds for this schedule."""
        return max(len(set(self._table_for(0, cfg))) for cfg in (False, True))

    # -- checks ------------------------------------------------------------------------------------------
    def _check_fingerprint(self, force: bool) -> None:
        msg = fingerprint_mismatch(self.schedule, type(self.denoiser).__name__, fingerprint_module(self.denoiser))
        if msg is None:
            return
        if not force:
            raise ScheduleError(msg + "; pass force=True to apply it anyway")
        warnings.warn(msg + "; applying anyway because force=True", stacklevel=3)

    def _check_scheduler(self) -> None:
        scheduler = getattr(self.pipe, "scheduler", None)
        expected = self.schedule.sampler.scheduler
        if scheduler is not None and type(scheduler).__name__ != expected:
            warnings.warn(
                f"schedule {self.schedule.name!r} was tuned for {expected}, the pipeline uses "
                f"{type(scheduler).__name__}; masks still align by step, but quality may differ",
                stacklevel=3,
            )

    def _check_blocks(self) -> None:
        """Every listed block must be a block of the denoiser's adapter (a module that is not one, such as a norm
        inside a transformer block, has no registered I/O contract nor cost). Denoisers no adapter covers (custom
        modules) are taken as they are."""
        try:
            space = adapter_for(self.denoiser).block_space(self.denoiser)
        except ScheduleError:
            return
        space.check_names([bm.block for bm in self.schedule.blocks])

    def _module(self, name: str) -> torch.nn.Module:
        try:
            return self.denoiser.get_submodule(name)
        except AttributeError:
            raise ScheduleError(
                f'blocks["{name}"]: the {type(self.denoiser).__name__} has no submodule {name!r}'
            ) from None

    # -- installation ------------------------------------------------------------------------------------
    def _wrap(self, i: int, module: torch.nn.Module, compile: dict[str, Any] | bool) -> None:
        def make(original: Callable) -> Callable:
            if compile is not False:
                options = {"dynamic": False, **(compile if isinstance(compile, dict) else {})}
                return self._make_forward(i, torch.compile(original, **options))
            return self._make_forward(i, original)

        self._patches.patch(module, "forward", make)

    def _set_affine(self, table: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Install per (block, step) 1-D scale and shift tensors, moved once to the denoiser's device/dtype
        (``fit_scale_shift`` passes trainable ones; they are used as given when already there)."""
        param = next(self.denoiser.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None else torch.float32
        index = {name: i for i, name in enumerate(self._names)}
        affine: list[list | None] = [None] * len(self._names)
        for (block, step), (scale, shift) in table.items():
            i = index.get(block)
            if i is None:
                raise ScheduleError(f"scale_shift: block {block!r} never reuses in this schedule")
            if affine[i] is None:
                affine[i] = [None] * self.schedule.num_steps
                if self._io[i] is None:
                    self._io[i] = block_io_of(self._modules[i], path=block)
            affine[i][step] = (scale.to(device=device, dtype=dtype), shift.to(device=device, dtype=dtype))
        self._affine = affine

    def _adjust(self, i: int, out: Any) -> Any:
        """``out`` with Block Caching's per-channel ``scale * y + shift`` at this step, if the schedule has one."""
        table = self._affine[i]
        if table is None:
            return out
        pair = table[self._state.step]
        if pair is None:
            return out
        io = self._io[i]
        y = io.hidden_output(out)
        shape = [1] * y.ndim
        shape[io.channel_dim] = -1
        scale, shift = pair
        return io.replace_hidden_output(out, torch.addcmul(shift.view(shape), y, scale.view(shape)))

    def _make_forward(self, i: int, run: Callable) -> Callable:
        state = self._state
        residual = self._residual
        order = self._taylor

        def forward(*args: Any, **kwargs: Any) -> Any:
            act = state.row[i]
            if act == RUN:
                return run(*args, **kwargs)
            if act == STORE:
                out = run(*args, **kwargs)
                if order is not None:
                    state.store[i] = taylor_update(state.store[i], out, state.step, order)
                else:
                    state.store[i] = self._delta(i, out, args, kwargs) if residual else out
                return out
            if act == REUSE:
                return self._reuse(i, run, args, kwargs)
            return self._split(i, act, run, args, kwargs)

        return forward

    def _wrap_scheduler(self, scheduler: Any) -> None:
        self._scheduler = scheduler

        def set_timesteps(original: Callable) -> Callable:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                out = original(*args, **kwargs)
                self._new_run(num_steps=int(scheduler.num_inference_steps), num_calls=len(scheduler.timesteps))
                return out

            return wrapper

        self._patches.patch(scheduler, "set_timesteps", set_timesteps)
        # img2img / inpaint (strength < 1) run only the tail of the timesteps: pipelines announce where it starts
        # through scheduler.set_begin_index(call index) where the scheduler has it, and return the tail from
        # pipe.get_timesteps(...) everywhere (its length is a shape: no device sync).
        if hasattr(scheduler, "set_begin_index"):

            def set_begin_index(original: Callable) -> Callable:
                def wrapper(begin_index: int = 0, *args: Any, **kwargs: Any) -> Any:
                    out = original(begin_index, *args, **kwargs)
                    self._begin_at(int(begin_index))
                    return out

                return wrapper

            self._patches.patch(scheduler, "set_begin_index", set_begin_index)
        if callable(getattr(self.pipe, "get_timesteps", None)):

            def get_timesteps(original: Callable) -> Callable:
                def wrapper(*args: Any, **kwargs: Any) -> Any:
                    out = original(*args, **kwargs)
                    tail = out[0] if isinstance(out, tuple) else out
                    if self._state.step_of_call is not None and hasattr(tail, "__len__"):
                        self._begin_at(len(self._state.step_of_call) - len(tail))
                    return out

                return wrapper

            self._patches.patch(self.pipe, "get_timesteps", get_timesteps)

    def remove(self) -> None:
        """Restore every wrapped module and scheduler/pipeline method exactly as it was; safe to call twice.

        A hook installed on a wrapped block *after* the schedule (diffusers' ``apply_group_offloading``
        block level, accelerate's ``add_hook_to_module``) wraps our wrapper: it is kept, and our wrapper is
        taken out from under it. Anything else that replaced a patched attribute raises :class:`ScheduleError`
        before anything is restored, so ``remove()`` can be called again once that is undone.
        """
        if self._removed:
            return
        self._patches.restore()  # raises (restoring nothing) if a later hook cannot be unwrapped
        self._removed = True
        if self._pre_hook is not None:
            self._pre_hook.remove()
        if getattr(self.denoiser, _HANDLE_ATTR, None) is self:
            delattr(self.denoiser, _HANDLE_ATTR)
        self._state.store = [None] * len(self._state.store)

    def _where(self, obj: Any) -> str:
        for name, module in zip(self._names, self._modules):
            if module is obj:
                return f"{type(self.denoiser).__name__}.{name}"
        return type(obj).__name__

    def __enter__(self) -> AppliedSchedule:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    # -- step accounting ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """Start a new sampling loop (only needed for a bare denoiser stopped part-way)."""
        self._new_run(self.schedule.num_steps, self.schedule.num_steps)

    def _new_run(self, num_steps: int, num_calls: int) -> None:
        if num_steps != self.schedule.num_steps:
            raise ScheduleError(
                f"schedule {self.schedule.name!r} has {self.schedule.num_steps} steps but the sampler was set "
                f"up for {num_steps}; call the pipeline with **schedule.pipeline_kwargs() "
                f"({self.schedule.pipeline_kwargs()})"
            )
        st = self._state
        st.step_of_call = steps_of_calls(self._scheduler, num_steps, num_calls)
        st.rows = self._table(0)
        st.call = -1
        st.store = [None] * len(st.store)

    def _cfg_now(self) -> bool:
        return self._cfg if self._cfg is not None else bool(getattr(self.pipe, "do_classifier_free_guidance", False))

    def _table(self, first_row: int) -> list[tuple]:
        """Action rows for a run that starts at ``first_row``; that row recomputes every block (nothing is
        stored yet), the rows after it follow the masks."""
        return self._table_for(first_row, self._cfg_now())

    def _table_for(self, first_row: int, cfg: bool) -> list[tuple]:
        key = (first_row, cfg)
        if key not in self._tables:
            self._tables[key] = action_rows(self._hooked, self.schedule.num_steps, first_row, cfg,
                                            store_every_recompute=self._taylor is not None)
        return self._tables[key]

    def _begin_at(self, begin_call: int) -> None:
        """The pipeline runs only calls ``begin_call`` onwards of this sampling loop (img2img, inpaint)."""
        st = self._state
        if st.step_of_call is None or not 0 <= begin_call < len(st.step_of_call):
            return
        if st.call >= 0 and st.call != begin_call - 1:
            raise ScheduleError(
                "the sampler's begin index was set after the denoiser already ran in this loop; cachesearch "
                "cannot align the schedule's steps"
            )
        st.call = begin_call - 1
        st.rows = self._table(st.step_of_call[begin_call])

    @torch.compiler.disable(recursive=True)
    def _on_denoiser_call(self, module: torch.nn.Module, args: tuple) -> None:
        # Host-side bookkeeping: traced by dynamo (unet.compile() compiles the hook as a frame of its own) it
        # would guard on the call counter and recompile at every step.
        st = self._state
        if self.pipe is not None and self.pipe.scheduler is not self._scheduler:
            raise ScheduleError(
                "pipe.scheduler was replaced after the schedule was applied; remove() the schedule, set the "
                "scheduler, then apply it again"
            )
        if st.step_of_call is None:
            if self.pipe is not None:
                raise ScheduleError(
                    "the denoiser ran before the scheduler's set_timesteps(); cachesearch counts steps from "
                    "set_timesteps, which every diffusers pipeline calls first"
                )
            self._new_run(self.schedule.num_steps, self.schedule.num_steps)
        st.call += 1
        if st.call >= len(st.step_of_call):
            if self.pipe is not None:
                raise ScheduleError(
                    f"the denoiser was called more than the {len(st.step_of_call)} times this sampler makes "
                    f"for {self.schedule.num_steps} steps; the schedule cannot be aligned with the steps"
                )
            self._new_run(self.schedule.num_steps, self.schedule.num_steps)  # bare denoiser: next loop
            st.call = 0
        st.step = st.step_of_call[st.call]
        st.row = st.rows[st.step]

    # -- reuse -------------------------------------------------------------------------------------------
    def _delta(self, i: int, out: Any, args: tuple, kwargs: dict) -> Residual:
        return residual_of(self._io[i], self._names[i], out, args, kwargs)

    def _add_residual(self, i: int, out: Any, delta: torch.Tensor, enc: torch.Tensor | None, args: tuple,
                      kwargs: dict, rows: slice | None = None) -> Any:
        return add_residual(self._io[i], out, delta, enc, args, kwargs, rows)

    def _reuse(self, i: int, run: Callable, args: tuple, kwargs: dict) -> Any:
        stored = self._state.store[i]
        if stored is None:
            raise ScheduleError(f'blocks["{self._names[i]}"]: nothing stored to reuse (internal error)')
        if self._taylor is not None:
            out = taylor_forecast(stored, self._state.step)
        elif not self._residual:
            out = stored
        else:
            out, delta, enc = stored
            out = self._add_residual(i, out, delta, enc, args, kwargs)
        if self._probe is not None:
            self._probe(i, self._state.step, out, run, args, kwargs)
        return self._adjust(i, out)

    def _split(self, i: int, acts: tuple[int, int], run: Callable, args: tuple, kwargs: dict) -> Any:
        # CFG batch = [uncond rows; cond rows]. One branch runs on its rows, the other reuses its rows.
        io = self._io[i]
        x = io.hidden_input(args, kwargs)
        if x is None:
            raise ScheduleError(f'blocks["{self._names[i]}"]: per-branch masks need a tensor input')
        batch = x.shape[0]
        half = batch // 2
        stored = self._state.store[i]
        parts = []
        store = False
        for (lo, hi), act in zip(((0, half), (half, batch)), acts):
            if act == REUSE:
                if self._residual:
                    out, delta, enc = stored
                    part = self._add_residual(i, tree_slice(out, lo, hi, batch), delta, enc, args, kwargs,
                                              slice(lo, hi))
                else:
                    part = tree_slice(stored, lo, hi, batch)
                part = self._adjust(i, part)
            else:
                part = run(*tree_slice(args, lo, hi, batch), **tree_slice(kwargs, lo, hi, batch))
                store = store or act == STORE
            parts.append(part)
        out = tree_cat(parts[0], parts[1])
        if store:
            self._state.store[i] = self._delta(i, out, args, kwargs) if self._residual else out
        return out


def apply_schedule(
    schedule: Schedule,
    target: Any,
    *,
    force: bool = False,
    compile: bool | str | dict[str, Any] = False,
    cfg: bool | None = None,
) -> AppliedSchedule:
    """Install ``schedule`` on a pipeline or denoiser (see :class:`AppliedSchedule`).

    Args:
        force: apply even if the denoiser's architecture fingerprint differs (warns).
        compile: ``True`` (or a dict of ``torch.compile`` options): compile each hooked block's original forward
            (regional; the schedule logic stays outside compiled code). ``"denoiser"`` (or a dict with
            ``"scope": "denoiser"``): compile the whole denoiser, one graph per distinct step pattern, each on
            its own code object, so nothing recompiles across steps or calls (``fullgraph=True`` by default).
        cfg: whether denoiser batches are CFG batches ``[uncond; cond]``; ``None`` asks the pipeline
            (``do_classifier_free_guidance``) at every call; bare denoisers default to no CFG.
    """
    return AppliedSchedule(schedule, target, force=force, compile=compile, cfg=cfg)


