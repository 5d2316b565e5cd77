"""Fit Block Caching's per-channel scale-shift (arXiv 2312.03209, Sec. 4) for a schedule's reused outputs.

Two methods (:class:`FitMethod`):

* ``lstsq`` (closed form): run the pipeline with the cached schedule; at every reuse step of every hooked
  block, also run the block on its actual inputs (model frozen, no grad) and accumulate, per channel, the
  sums of ``x`` (the stored output that is reused), ``y`` (the fresh output a recompute would give), ``x²``
  and ``xy`` over images, CFG rows and positions; then ``scale = cov(x, y) / var(x)`` and
  ``shift = mean(y) - scale·mean(x)`` minimise ``Σ (scale·x + shift - y)²`` per channel. One pass, no
  affine applied while collecting (each (block, step) is fitted on the plain cached trajectory).
* ``distill`` (the paper's): record the uncached denoiser's inputs and outputs at every step, then train
  the scale and shift with Adam (identity start) so the cached denoiser, replayed on those inputs,
  matches the uncached output at every step (sum of per-step MSE; the model's parameters are frozen, only
  the affine gets gradients).

Not on the runtime path: ``import cachesearch`` does not load this module (``cs.fit_scale_shift`` is lazy).
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from ..schedule import Provenance, ScaleShift, Schedule, ScheduleError
from ..schedule._mask import REUSE

__all__ = ["FitMethod", "fit_scale_shift"]

_BATCH = 4
_TINY = 1e-12


class FitMethod(str, enum.Enum):
    """How :func:`fit_scale_shift` fits the per-channel scale and shift."""

    LSTSQ = "lstsq"
    DISTILL = "distill"


def _prompts(schedule: Schedule, prompts: Sequence[str] | str | None, n_images: int,
             seed: int) -> tuple[list[str], list[int], str]:
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1:
        raise ValueError(f"n_images: expected a positive integer, got {n_images!r}")
    if prompts is None:
        from ._prompts import builtin_prompts

        ps = builtin_prompts(schedule.model.source, "train", n_images)
        return list(ps.prompts), [s + seed for s in ps.seeds], ps.name
    items = [prompts] if isinstance(prompts, str) else list(prompts)
    if not items or not all(isinstance(p, str) and p.strip() for p in items):
        raise ValueError("prompts: expected a non-empty list of non-empty strings")
    chosen = [items[i % len(items)] for i in range(n_images)]
    return chosen, [seed + i for i in range(n_images)], "given prompts"


def _targets(schedule: Schedule) -> list[tuple[str, int]]:
    return [(bm.block, s) for bm in schedule.blocks for s in range(schedule.num_steps)
            if REUSE in (bm.cond[s], bm.uncond[s])]


def _run(pipe: Any, schedule: Schedule, prompts: list[str], seeds: list[int], call: dict) -> torch.Tensor:
    """Final latents of one pipeline call (``output_type="latent"``: the VAE is not needed to fit)."""
    device = getattr(pipe, "device", torch.device("cpu"))
    gens = [torch.Generator(device=device).manual_seed(s) for s in seeds]
    out = pipe(prompt=prompts, generator=gens, output_type="latent", **schedule.pipeline_kwargs(), **call)
    images = out.images if hasattr(out, "images") else out[0]
    return images.detach().float().cpu()


def _batches(n: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + _BATCH, n)) for lo in range(0, n, _BATCH)]


def _channels_first(y: torch.Tensor, dim: int) -> torch.Tensor:
    return y.detach().movedim(dim, 0).reshape(y.shape[dim], -1).to(torch.float64)


def _fit_lstsq(pipe: Any, base: Schedule, prompts: list[str], seeds: list[int], call: dict) -> dict:
    from ..adapters import block_io_of

    stats: dict[tuple[int, int], list[torch.Tensor]] = {}
    with base.applied(pipe) as handle, torch.no_grad():
        ios = [block_io_of(m, path=n) for n, m in zip(handle._names, handle._modules)]

        def probe(i: int, step: int, out: Any, run: Any, args: tuple, kwargs: dict) -> None:
            io = ios[i]
            x = _channels_first(io.hidden_output(out), io.channel_dim)
            y = _channels_first(io.hidden_output(run(*args, **kwargs)), io.channel_dim)
            acc = stats.get((i, step))
            parts = (torch.full((x.shape[0],), float(x.shape[1]), dtype=torch.float64, device=x.device),
                     x.sum(1), y.sum(1), (x * x).sum(1), (x * y).sum(1))
            if acc is None:
                stats[(i, step)] = list(parts)
            else:
                for a, p in zip(acc, parts):
                    a += p

        handle._probe = probe
        for lo, hi in _batches(len(prompts)):
            _run(pipe, base, prompts[lo:hi], seeds[lo:hi], call)
        names = list(handle._names)
    entries = {}
    for (i, step), (n, sx, sy, sxx, sxy) in stats.items():
        var = n * sxx - sx * sx
        cov = n * sxy - sx * sy
        ok = var > _TINY * n * n * (1.0 + sxx / n)
        scale = torch.where(ok, cov / torch.where(ok, var, torch.ones_like(var)), torch.ones_like(var))
        shift = (sy - scale * sx) / n
        entries[(names[i], step)] = (scale.float().cpu().numpy(), shift.float().cpu().numpy())
    return entries


def _denoiser_output(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    return out.sample if hasattr(out, "sample") else out[0]


def _fit_distill(pipe: Any, base: Schedule, prompts: list[str], seeds: list[int], call: dict, *,
                 iterations: int, lr: float) -> dict:
    from ..adapters import block_io_of, denoiser_of

    unet = denoiser_of(pipe)
    n_steps = base.num_steps
    # 1. The uncached trajectory: the denoiser's inputs and outputs at every call.
    recorded: list[list[tuple[tuple, dict, torch.Tensor]]] = []
    calls: list = []

    def pre(module: Any, args: tuple, kwargs: dict) -> None:
        calls.append([args, kwargs])

    def post(module: Any, args: tuple, kwargs: dict, out: Any) -> None:
        calls[-1].append(_denoiser_output(out).detach())

    handles = [unet.register_forward_pre_hook(pre, with_kwargs=True),
               unet.register_forward_hook(post, with_kwargs=True)]
    try:
        with torch.no_grad():
            for lo, hi in _batches(len(prompts)):
                calls = []
                _run(pipe, base, prompts[lo:hi], seeds[lo:hi], call)  # no schedule applied: full compute
                if len(calls) != n_steps:
                    raise ScheduleError(
                        f"fit_scale_shift(method='distill'): the sampler made {len(calls)} denoiser calls for "
                        f"{n_steps} steps; distill replays one call per step (use a one-call sampler such as DDIM, "
                        f"or method='lstsq')"
                    )
                recorded.append([(tuple(a), dict(k), y) for a, k, y in calls])
    finally:
        for h in handles:
            h.remove()
    cfg = bool(getattr(pipe, "do_classifier_free_guidance", False))

    # 2. Replay the cached denoiser on those inputs; the affine is trained, the model is frozen.
    frozen = [(p, p.requires_grad) for p in unet.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)
    try:
        with base.applied(unet, cfg=cfg) as handle:
            ios = [block_io_of(m, path=n) for n, m in zip(handle._names, handle._modules)]
            channels: dict[tuple[int, int], int] = {}

            def probe(i: int, step: int, out: Any, run: Any, args: tuple, kwargs: dict) -> None:
                io = ios[i]
                channels[(i, step)] = io.hidden_output(out).shape[io.channel_dim]

            handle._probe = probe
            with torch.no_grad():
                handle.reset()
                for args, kwargs, _ in recorded[0]:
                    unet(*args, **kwargs)
            handle._probe = None
            param = next(unet.parameters())
            params = {}
            for (i, step), c in channels.items():
                scale = torch.ones(c, device=param.device, dtype=torch.float32, requires_grad=True)
                shift = torch.zeros(c, device=param.device, dtype=torch.float32, requires_grad=True)
                params[(handle._names[i], step)] = (scale, shift)
            handle._set_affine(params)
            opt = torch.optim.Adam([t for pair in params.values() for t in pair], lr=lr)
            for it in range(iterations):
                batch = recorded[it % len(recorded)]
                handle.reset()
                opt.zero_grad(set_to_none=True)
                loss = 0.0
                for args, kwargs, target in batch:
                    y = _denoiser_output(unet(*args, **kwargs))
                    loss = loss + torch.nn.functional.mse_loss(y.float(), target.float())
                (loss / len(batch)).backward()
                opt.step()
    finally:
        for p, g in frozen:
            p.requires_grad_(g)
    return {k: (s.detach().cpu().numpy(), b.detach().cpu().numpy()) for k, (s, b) in params.items()}


def fit_scale_shift(
    pipe: Any,
    schedule: Schedule,
    *,
    prompts: Sequence[str] | str | None = None,
    n_images: int = 8,
    method: FitMethod | str = FitMethod.LSTSQ,
    seed: int = 0,
    iterations: int = 200,
    lr: float = 1e-2,
    height: int | None = None,
    width: int | None = None,
) -> Schedule:
    """A copy of ``schedule`` with a per (block, step, channel) scale and shift for every reused output.

    Args:
        pipe: the diffusers pipeline the schedule is for (model weights are never changed).
        schedule: the caching schedule; an existing ``scale_shift`` is replaced, metrics are dropped (they were
            measured without it).
        prompts: prompts to fit on. Default: the schedule's own **train** prompts, i.e. the built-in train set
            of ``schedule.model.source`` (the embedded model's procedural captions, for other models the
            generic train list); held-out prompts stay unseen.
        n_images: images to fit on (prompts are cycled when fewer are given); seeds ``seed + i`` (default
            prompts: the train set's seeds offset by ``seed``).
        method: ``"lstsq"`` (closed-form per-channel least squares between the reused output and the fresh
            output at that step) or ``"distill"`` (Adam on the cached denoiser's output vs the uncached one at
            every step, ``iterations`` updates at learning rate ``lr``; needs a one-call-per-step sampler).
        height: image height of the fitting runs (default: the pipeline's); fit at the size you generate.
        width: image width of the fitting runs (default: the pipeline's).

    Blocks with per-CFG-branch masks are fitted by ``distill`` only (``lstsq`` observes whole-batch reuse).
    """
    try:
        m = FitMethod(method)
    except ValueError:
        raise ValueError(f"method: expected 'lstsq' or 'distill', got {method!r}") from None
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations: expected a positive integer, got {iterations!r}")
    if not _targets(schedule):
        raise ScheduleError(f"schedule {schedule.name!r} reuses no block at any step: nothing to fit")
    texts, seeds, source = _prompts(schedule, prompts, n_images, seed)
    base = replace(schedule, scale_shift=None)
    call = {k: v for k, v in (("height", height), ("width", width)) if v is not None}
    from cachesearch.adapters import adapter_for, denoiser_of

    call.update(adapter_for(denoiser_of(pipe)).call_kwargs(pipe))
    if m is FitMethod.LSTSQ:
        entries = _fit_lstsq(pipe, base, texts, seeds, call)
    else:
        entries = _fit_distill(pipe, base, texts, seeds, call, iterations=int(iterations), lr=float(lr))
    if not entries:
        raise ScheduleError(f"schedule {schedule.name!r}: no reused output was observed; nothing was fitted")
    from .._util import utc_now
    from .._version import __version__

    note = f"fit_scale_shift {m.value} on {len(texts)} images ({source}, seed {seed}); metrics dropped"
    old = schedule.provenance
    prov = (replace(old, note=note) if old is not None
            else Provenance(cachesearch=__version__, created=utc_now(), note=note))
    return replace(schedule, scale_shift=ScaleShift(entries), metrics=None, provenance=prov)


class FitCache:
    """Scale-shifts fitted once per (mask, method) and reused for every later schedule with the same masks (a
    search meets the same mask again under other names); ``seconds`` records each fit's time."""

    def __init__(self) -> None:
        self._fitted: dict[str, ScaleShift] = {}
        self.seconds: dict[str, float] = {}

    @staticmethod
    def key(schedule: Schedule, method: str) -> str:
        """What a fit depends on besides the model and prompts: method, steps and masks."""
        s = schedule.sampler
        return json.dumps([method, s.num_inference_steps, list(s.timesteps or ()),
                           sorted((b.block, b.cond, b.uncond) for b in schedule.blocks)])

    def apply(self, pipe: Any, schedule: Schedule, method: str, prompts: Sequence[str], *,
              height: int | None = None, width: int | None = None) -> Schedule:
        """``schedule`` with the scale-shift fitted for its masks (fitted now on ``prompts`` if not yet)."""
        key = self.key(schedule, method)
        fitted = self._fitted.get(key)
        if fitted is None:
            t0 = time.perf_counter()
            fitted = fit_scale_shift(pipe, schedule, prompts=list(prompts), n_images=len(prompts), method=method,
                                     height=height, width=width).scale_shift
            self.seconds[key] = time.perf_counter() - t0
            self._fitted[key] = fitted
        return replace(schedule, scale_shift=fitted)
