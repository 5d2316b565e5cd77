"""Install a schedule on a diffusers pipeline: per-instance forward wrappers on the listed blocks.

At apply time every (step, block) cell is turned into an action (run, run and store, reuse, or a per-CFG-
branch split), so a block wrapper only indexes a tuple (:mod:`._blockhooks`). Steps are counted from denoiser
calls (a forward pre-hook), per CFG pass where the pipeline runs them separately, and reset when the pipeline calls
``scheduler.set_timesteps`` (:mod:`._clock`, :mod:`._loop`): nothing reads timestep values, so the hot path never
synchronises with the device. A pipeline with two experts (Wan 2.2 A14B) has both hooked (:mod:`._experts`).
"""

from __future__ import annotations

from typing import Any

import torch

from ..adapters import BlockIO, block_io_of, call_roles_of
from ..schedule import ReuseMode, Schedule, ScheduleError
from ._blockhooks import BlockHooks
from ._checks import check_blocks, check_expert_starts, check_fingerprint, check_scheduler, submodule
from ._clock import BATCHED, COND, UNCOND, Clock
from ._compiling import compile_scope, pattern_compiled_forward, warn_if_too_many_patterns
from ._experts import experts_of, uncompiled
from ._loop import patch_cache_context, patch_scheduler
from ._patches import Patches
from ._runtime_applied import AppliedRuntime, apply_runtime
from ._steps import steps_of_calls
from ._table import action_rows

__all__ = ["AppliedSchedule", "apply_schedule"]

_HANDLE_ATTR = "_cachesearch_applied"


class AppliedSchedule:
    """Handle of a schedule installed on a pipeline; ``remove()`` restores the original modules exactly.

    With a pipeline, every call (``scheduler.set_timesteps``) starts a new run. A bare denoiser must be
    called once per step (per cache context, when its calls run in ``cache_context("cond")`` /
    ``("uncond")``); after ``num_steps`` calls the next call starts a new run (or call :meth:`reset`).

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
        if schedule.runtime is not None:
            raise ScheduleError(f"schedule {schedule.name!r} is a runtime schedule ({schedule.runtime.library}); "
                                f"apply it with schedule.apply(pipe) or cachesearch.apply_schedule")
        self.schedule = schedule
        self._cfg = cfg
        experts = experts_of(target)  # what the pipeline calls: maybe torch.compile wrappers
        called = experts[0][1]
        self.denoiser = uncompiled(called)
        self._experts = [(attr, uncompiled(m)) for attr, m in experts]
        self.pipe = target if target is not called else None
        roles = call_roles_of(self.denoiser)  # calls beside the steps, CFG passes named by an argument
        self._read_call = roles.reader(type(self.denoiser).forward) if roles is not None else None
        for _, module in self._experts:
            if getattr(module, _HANDLE_ATTR, None) is not None:
                raise ScheduleError("a schedule is already applied to this denoiser; remove() it first")
        check_fingerprint(schedule, target, self.denoiser, self._experts, force)
        check_scheduler(schedule, self.pipe)
        self._removed = False

        for bm in schedule.blocks:  # every listed block must exist (in every expert), hooked or not
            for attr, module in self._experts:
                submodule(module, bm.block, self._experts, attr)
        check_blocks(schedule, self._experts)
        check_expert_starts(schedule, self.pipe, self._experts)
        # Only blocks that ever reuse need a wrapper: an all-R block runs untouched.
        hooked = [bm for bm in schedule.blocks if "." in bm.cond or "." in bm.uncond]
        self._hooked = hooked
        self._names = [bm.block for bm in hooked]
        self._modules = [submodule(self.denoiser, bm.block, self._experts) for bm in hooked]
        residual = schedule.reuse is ReuseMode.RESIDUAL
        # Residual reuse and per-branch masks read the hidden state: the adapter's I/O contract says where.
        adjusted = set(schedule.scale_shift.blocks()) if schedule.scale_shift is not None else set()
        io: list[BlockIO | None] = [
            block_io_of(m, path=bm.block) if residual or not bm.shared or bm.block in adjusted else None
            for bm, m in zip(hooked, self._modules)
        ]
        per_branch = next((bm.block for bm in schedule.blocks if not bm.shared), None)
        self._per_branch = per_branch  # the first block with cond != uncond masks (named in refusals)
        self._tables: dict[tuple[int, str], list[tuple]] = {}  # (first row run, mode) -> action rows
        self._clock = Clock(len(hooked), self._table_for, self._default_mode, per_branch)
        self._hooks = BlockHooks(self._names, self._modules, io, self._clock.cursor, residual=residual,
                                 taylor=schedule.taylor_order if schedule.reuse is ReuseMode.TAYLOR else None,
                                 num_steps=schedule.num_steps, taylor_guard=schedule.taylor_guard)
        if schedule.scale_shift is not None:
            self._set_affine({k: tuple(torch.from_numpy(a.copy()) for a in v)
                              for k, v in schedule.scale_shift.entries.items()})
        if cfg is False and per_branch is not None:
            raise ScheduleError(
                f'blocks["{per_branch}"]: per-branch (cond/uncond) masks, but cfg=False says the denoiser sees no '
                f"[uncond; cond] batches; give both branches one mask"
            )

        self._patches = Patches(describe=self._where)
        self._scheduler = None
        self._pre_hooks: list[Any] = []
        self.compiled_variants: dict = {}
        try:
            self._install(experts, compile)
        except BaseException:
            self.remove()
            raise
        if called is not self.denoiser or getattr(self.denoiser, "_compiled_call_impl", None) is not None:
            warn_if_too_many_patterns(self.schedule.name, self.row_patterns())

    def _install(self, experts: list[tuple[str | None, torch.nn.Module]], compile: bool | str | dict) -> None:
        scope, options = compile_scope(compile)
        cur = self._clock.cursor
        # affine tensors and Taylor coefficients differ per step
        key = (lambda: (cur.row, cur.step)) if self._hooks.per_step() else (lambda: cur.row)
        for (attr, called), (_, expert) in zip(experts, self._experts):
            modules = [submodule(expert, name, self._experts, attr) for name in self._names]
            for i, module in enumerate(modules):
                self._wrap(i, module, options if scope == "blocks" else False)
            if scope == "denoiser":
                if called is not expert or "forward" in expert.__dict__:
                    raise ScheduleError(
                        "compile='denoiser' compiles the denoiser itself: apply it to an uncompiled denoiser whose "
                        "forward nothing else has replaced"
                    )
                make, variants = pattern_compiled_forward(expert, key, options)
                self.compiled_variants = self.compiled_variants or variants  # the first expert's, for inspection
                self._patches.patch(expert, "forward", make)
            patch_cache_context(self._patches, expert, self._clock)
            # On the module the pipeline calls, so that under torch.compile(unet) the step counting runs outside
            # the compiled frame; kept out of dynamo under unet.compile() too (see _on_denoiser_call).
            self._pre_hooks.append(called.register_forward_pre_hook(self._on_denoiser_call, with_kwargs=True))
        if self.pipe is not None and getattr(self.pipe, "scheduler", None) is not None:
            self._scheduler = self.pipe.scheduler
            patch_scheduler(self._patches, self._scheduler, self.pipe, new_run=self._new_run, begin_at=self._begin_at,
                            calls_in_loop=self._calls_in_loop)
        for _, expert in self._experts:
            setattr(expert, _HANDLE_ATTR, self)

    def row_patterns(self) -> int:
        """Distinct action rows of a full-length run (batched CFG, or the cond and uncond passes together, or no
        CFG, whichever has more): the number of graphs a whole-denoiser ``torch.compile`` builds for this schedule."""
        passes = set(self._table_for(0, COND)) | set(self._table_for(0, UNCOND))
        return max(len(set(self._table_for(0, BATCHED))), len(passes))

    # -- installation ------------------------------------------------------------------------------------
    def _wrap(self, i: int, module: torch.nn.Module, compile: dict[str, Any] | bool) -> None:
        def make(original: Any) -> Any:
            if compile is not False:
                options = {"dynamic": False, **(compile if isinstance(compile, dict) else {})}
                return self._hooks.make_forward(i, torch.compile(original, **options))
            return self._hooks.make_forward(i, original)

        self._patches.patch(module, "forward", make)

    def _set_affine(self, table: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Install per (block, step) 1-D scale and shift tensors, moved once to the denoiser's device/dtype
        (``fit_scale_shift`` passes trainable ones; they are used as given when already there)."""
        param = next(self.denoiser.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None else torch.float32
        self._hooks.set_affine(table, device, dtype)

    @property
    def _probe(self) -> Any:
        """``fit_scale_shift``'s observer of reuse steps (``None``: never called)."""
        return self._hooks.probe

    @_probe.setter
    def _probe(self, fn: Any) -> None:
        self._hooks.probe = fn

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
        for hook in self._pre_hooks:
            hook.remove()
        for _, expert in self._experts:
            if getattr(expert, _HANDLE_ATTR, None) is self:
                delattr(expert, _HANDLE_ATTR)
        self._clock.clear()

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
        per_branch = self._per_branch
        if per_branch is not None and self.pipe is not None and self._cfg is None \
                and getattr(self.pipe, "do_classifier_free_guidance", True) is False:
            raise ScheduleError(
                f'blocks["{per_branch}"]: per-branch (cond/uncond) masks, but this pipeline call runs no '
                f"classifier-free guidance (guidance_scale <= 1); call it with guidance "
                f"(**schedule.pipeline_kwargs()), or give both branches one mask"
            )
        self._clock.new_run(steps_of_calls(self._scheduler, num_steps, num_calls))

    def _default_mode(self) -> str:
        """How the default branch's batches are laid out: ``[uncond; cond]`` (batched CFG) or one branch."""
        cfg = self._cfg if self._cfg is not None else bool(getattr(self.pipe, "do_classifier_free_guidance", False))
        return BATCHED if cfg else COND

    def _table_for(self, first_row: int, mode: str) -> list[tuple]:
        """Action rows for a run that starts at ``first_row`` (that row recomputes every block: nothing is stored
        yet; the rows after it follow the masks), for one branch's masks or a batched CFG call."""
        key = (first_row, mode)
        if key not in self._tables:
            self._tables[key] = action_rows(self._hooked, self.schedule.num_steps, first_row, mode,
                                            store_every_recompute=self._hooks.taylor is not None)
        return self._tables[key]

    def _calls_in_loop(self) -> int | None:
        calls = self._clock.step_of_call
        return None if calls is None else len(calls)

    def _begin_at(self, begin_call: int) -> None:
        """The pipeline runs only calls ``begin_call`` onwards of this sampling loop (img2img, inpaint)."""
        self._clock.begin_at(begin_call)

    @torch.compiler.disable(recursive=True)
    def _on_denoiser_call(self, module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        # Host-side bookkeeping: traced by dynamo (unet.compile() compiles the hook as a frame of its own) it
        # would guard on the call counter and recompile at every step.
        if self.pipe is not None and self.pipe.scheduler is not self._scheduler:
            raise ScheduleError(
                "pipe.scheduler was replaced after the schedule was applied; remove() the schedule, set the "
                "scheduler, then apply it again"
            )
        branch = None
        if self._read_call is not None:
            side, branch = self._read_call(args, kwargs)
            if side:  # a KV-cache prefill or capture beside the steps: every block runs, nothing is counted
                self._clock.side_call()
                return
        if self._clock.step_of_call is None:
            if self.pipe is not None:
                raise ScheduleError(
                    "the denoiser ran before the scheduler's set_timesteps(); cachesearch counts steps from "
                    "set_timesteps, which every diffusers pipeline calls first"
                )
            self._new_run(self.schedule.num_steps, self.schedule.num_steps)
        self._clock.on_call(module, wrap=self.pipe is None, where=f"{self.schedule.num_steps} steps", branch=branch)

    # -- what the blocks stored (exact prefix sharing: cachesearch.evaluate._prefix) ------------------------
    # Read between calls, from a denoiser pre-hook registered after the applier's: the running branch is the one
    # the clock just advanced.
    @property
    def hooked_blocks(self) -> tuple[str, ...]:
        """The blocks this schedule wraps (those whose masks ever reuse), in row order."""
        return tuple(self._names)

    @property
    def single_denoiser(self) -> bool:
        """Whether the pipeline calls one denoiser (not two experts)."""
        return len(self._experts) == 1

    @property
    def side_calls(self) -> bool:
        """Whether the denoiser's pipelines call it beside the steps too (KV-cache prefill or capture: its family
        registers :class:`~cachesearch.adapters.CallRoles`), so that its calls do not map to steps by count."""
        return self._read_call is not None

    def branch(self) -> str | None:
        """The cache branch of the running call (``None``: the default one)."""
        return self._clock.running().name

    def run_actions(self) -> dict[str, tuple]:
        """Per wrapped block, its action at every step of the running branch (``RUN``, ``STORE``, ``REUSE`` or an
        ``(uncond, cond)`` pair)."""
        rows = self._clock.running().rows
        return {name: tuple(row[i] for row in rows) for i, name in enumerate(self._names)}

    def stored(self) -> dict[str, Any]:
        """What each wrapped block has stored so far in the running branch (blocks with nothing stored are left
        out). The values are the stored objects themselves: the runtime replaces them, never changes them."""
        return {name: v for name, v in zip(self._names, self._clock.running().store) if v is not None}

    def load_stored(self, values: dict[str, Any]) -> None:
        """Make ``values`` (by block, as :meth:`stored` gives them) what the running branch's blocks have stored;
        a wrapped block not in ``values`` has nothing stored."""
        self._clock.running().store[:] = [values.get(name) for name in self._names]


def apply_schedule(
    schedule: Schedule,
    target: Any,
    *,
    force: bool = False,
    compile: bool | str | dict[str, Any] = False,
    cfg: bool | None = None,
) -> AppliedSchedule | AppliedRuntime:
    """Install ``schedule`` on a pipeline or denoiser (see :class:`AppliedSchedule`); a runtime schedule is enabled
    by its library's own ``enable_cache`` instead (:class:`~._runtime_applied.AppliedRuntime`).

    Args:
        force: apply even if the denoiser's architecture fingerprint differs (warns).
        compile: ``True`` (or a dict of ``torch.compile`` options): compile each hooked block's original forward
            (regional; the schedule logic stays outside compiled code). ``"denoiser"`` (or a dict with
            ``"scope": "denoiser"``): compile the whole denoiser, one graph per distinct step pattern, each on
            its own code object, so nothing recompiles across steps or calls (``fullgraph=True`` by default).
        cfg: whether denoiser batches are CFG batches ``[uncond; cond]``; ``None`` asks the pipeline
            (``do_classifier_free_guidance``) at every call; bare denoisers default to no CFG. Pipelines that run
            the cond and uncond passes as separate calls (inside ``cache_context("cond")`` / ``("uncond")``: Wan,
            HunyuanVideo, Qwen-Image, FLUX with ``true_cfg_scale > 1``) are recognised by those contexts: each
            pass keeps its own step counter and stored outputs and follows its own masks.
    """
    if schedule.runtime is not None:
        return apply_runtime(schedule, target, force=force, compile=compile, cfg=cfg)
    return AppliedSchedule(schedule, target, force=force, compile=compile, cfg=cfg)
