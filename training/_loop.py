"""The training loop the embedded models share: paced schedule, warm-up + cosine LR, EMA, checkpoints, resume.

A model's trainer supplies the loss of one step (``loss_fn``) and what a checkpoint writes besides the shared
state (its pipeline folder); this module does the rest identically for every model, so a run that is stopped by
its time budget and resumed gives the same weights as one that was not (tested per model).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "LoopState",
    "fit_steps",
    "hardware",
    "load_checkpoint",
    "lr_at",
    "param_counts",
    "save_ckpt",
    "start_run",
    "train_loop",
    "write_record",
]

PACE = 40
"""Steps timed before the schedule is laid out over the time budget."""


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up then cosine decay to 10 % of ``peak``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def fit_steps(planned: int, done: int, pace: float, seconds_left: float | None) -> int:
    """Steps to lay the schedule out over: ``planned``, or fewer if the measured pace would overrun the budget.

    Called once, after ``done`` warm-up steps whose learning rate does not depend on the total, so re-running
    with the returned number as ``steps`` and no time budget reproduces the run exactly.
    """
    if seconds_left is None or pace <= 0:
        return planned
    return max(done + 1, min(planned, done + int(0.9 * seconds_left / pace)))


def hardware(device: str) -> dict:
    """What a run ran on (device, platform, CPU count, torch threads and version, GPU name): for training.json."""
    info = {
        "device": device,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def param_counts(**modules: torch.nn.Module) -> dict[str, int]:
    """Parameters of each module, by name (the ``params`` of a run's record)."""
    return {name: sum(p.numel() for p in module.parameters()) for name, module in modules.items()}


def write_record(path: Path, info: dict, log: Callable[[str], None]) -> None:
    """Write a run's record (``training.json``, ``decoder.json``, …) and log it as the run's last line."""
    path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    log(f"[done] {json.dumps(info)}")


def save_ckpt(path: Path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically (a temporary file, then ``os.replace``)."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


@dataclass
class LoopState:
    """Where a training run is: steps done, the laid-out total (``None`` until paced), loss, seconds."""

    step: int = 0
    steps: int | None = None
    run_loss: float = 0.0
    elapsed: float = 0.0
    stopped_early: bool = False


def start_run(out_dir: Path | str, *, threads: int | None, minutes: float | None) -> tuple[Path, float, float | None]:
    """Create ``out_dir``, set torch's CPU threads (``None``: leave them) and return ``(out_dir, start time,
    deadline)``; the deadline is ``minutes`` after the start (``None``: no time budget)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if threads is not None:
        torch.set_num_threads(threads)
    t_start = time.time()
    return out, t_start, None if minutes is None else t_start + 60.0 * minutes


def load_checkpoint(path: Path, modules: Mapping[str, torch.nn.Module], ema: Sequence[torch.Tensor],
                    opt: torch.optim.Optimizer, gen: torch.Generator) -> LoopState:
    """Restore ``modules``, EMA, optimizer and noise generator from ``path`` if it exists (else a fresh state)."""
    if not path.exists():
        return LoopState()
    ck = torch.load(path, weights_only=False)
    for key, module in modules.items():
        module.load_state_dict(ck[key])
    for e, v in zip(ema, ck["ema"], strict=True):
        e.copy_(v)
    opt.load_state_dict(ck["opt"])
    gen.set_state(ck["gen"])
    return LoopState(step=ck["step"], steps=ck["steps"], run_loss=ck["run_loss"], elapsed=ck["elapsed"])


def train_loop(
    *,
    tag: str,
    loss_fn: Callable[[], torch.Tensor],
    modules: Mapping[str, torch.nn.Module],
    params: Sequence[torch.nn.Parameter],
    ema: Sequence[torch.Tensor],
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    state: LoopState,
    planned: int,
    lr: float,
    ema_decay: float,
    deadline: float | None,
    checkpoint_every: int,
    ckpt_path: Path,
    on_checkpoint: Callable[[], None],
    log: Callable[[str], None],
    warmup: int = 200,
) -> LoopState:
    """Run steps until the laid-out total or the ``deadline`` (``time.time()`` seconds); returns the state.

    After :data:`PACE` steps of a fresh run the total becomes ``planned`` or fewer to fit the deadline (recorded
    in the checkpoint, so a resumed run keeps it). Each step: LR at the step, ``loss_fn()``, backward, gradient
    clip 1.0, optimizer step, EMA lerp. Every ``checkpoint_every`` steps, at the end and at the deadline the
    checkpoint is written and ``on_checkpoint()`` called (the trainer saves its pipeline from the EMA there).
    """
    t0, start = time.time(), state.step
    steps = state.steps or planned
    for m in modules.values():
        m.train()
    while state.step < steps:
        if state.step == start + PACE and state.steps is None:
            left = None if deadline is None else deadline - time.time()
            steps = fit_steps(planned, state.step, (time.time() - t0) / (state.step - start), left)
            state.steps = steps
            log(f"[{tag}] schedule laid out over {steps} steps (planned {planned})")
        for g in opt.param_groups:
            g["lr"] = lr_at(state.step, steps, lr, warmup)
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        d = min(ema_decay, (1 + state.step) / (10 + state.step))
        with torch.no_grad():
            torch._foreach_lerp_(list(ema), [p.detach() for p in params], 1.0 - d)
        state.run_loss = loss.item() if state.step == start else 0.99 * state.run_loss + 0.01 * loss.item()
        state.step += 1
        elapsed = state.elapsed + time.time() - t0
        if state.step % 50 == 0 or state.step == steps:
            log(f"[{tag}] step {state.step}/{steps} loss {state.run_loss:.4f} ({elapsed:.0f}s, "
                f"{(time.time() - t0) / (state.step - start):.2f}s/step)")
        timeout = deadline is not None and time.time() > deadline
        if state.step % checkpoint_every == 0 or state.step == steps or timeout:
            save_ckpt(ckpt_path, {**{k: m.state_dict() for k, m in modules.items()}, "ema": list(ema),
                                   "opt": opt.state_dict(), "gen": gen.get_state(), "step": state.step,
                                   "steps": steps, "run_loss": state.run_loss, "elapsed": elapsed})
            on_checkpoint()
            log(f"[{tag}] checkpoint at step {state.step}")
        if timeout:
            state.stopped_early = True
            log(f"[{tag}] time budget reached at step {state.step}")
            break
    state.steps = steps
    state.elapsed += time.time() - t0
    return state
