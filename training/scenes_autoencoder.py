"""Train a ``scenes`` autoencoder that carries the objects' textures (64 px <-> 16x16xC latents).

The first ``scenes`` autoencoder (4 latent channels, 495 steps of L1 + MSE on posterior samples) reconstructed
none of the data's textures: stripes of period 4-8 px came back with correlation ~0 to the truth
(``benchmarks/results/autoencoder_textures.json``), so every latent a denoiser learned from was a flat object and
sampling trajectories stayed nearly straight. This trainer fixes what that run lacked:

- a decoder that can draw inside a latent cell: :class:`cachesearch.embedded.scenes._vae.SubpixelAutoencoderKL`
  (sub-pixel convolution instead of nearest-neighbour upsampling, which cannot draw a texture whose period
  divides the cell);
- ``latent_channels`` (default 8): a 4x4 pixel cell holds a stripe or checker pattern; 8 numbers per cell give
  the encoder room to keep it (still 6x compression);
- a **gradient loss**: L1 between the finite differences of the reconstruction and of the input, so the
  high-frequency part of the image (texture edges, object outlines) is weighted as much as the flat colour,
  which L1 + MSE alone hardly penalise losing;
- the **palette loss** of :mod:`training.scenes_decoder` (per-pixel cross-entropy over the 10 palette colours),
  so colours round-trip exactly enough for the checker;
- decoding the posterior mean plus ``latent_noise`` x its std (not a full posterior sample, which taught the
  first decoder to blur), a small KL term keeping the latents bounded, and the shared paced / EMA / resumable
  loop (:mod:`training._loop`) on fresh procedural scenes each step (step ``k`` draws from a stream keyed by ``k``).

Writes ``out_dir/vae`` (a diffusers ``AutoencoderKL`` folder with the EMA weights and the scaling factor
1 / latent std) and ``out_dir/autoencoder.json``. The scenes trainer uses it with ``--vae out_dir/vae``.

Usage::

    python -m training.scenes_autoencoder --out RUN [--steps 1500] [--minutes 50] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cachesearch.embedded.scenes._components import vae_config
from cachesearch.embedded.scenes._data import DEFAULT_SIZE, TRAIN_STREAM
from cachesearch.embedded.shapes._data import COLORS, PALETTE

from ._loop import hardware, load_checkpoint, start_run, train_loop, write_record

__all__ = ["gradient_l1", "palette_loss", "train_autoencoder"]

_AE_PHASE = 4  # training-stream phases 0-3: first autoencoder, training set, UNet, decoder fine-tune
_STATS_PHASE = 99  # held-out scenes for the latent statistics and MSE (as the first autoencoder's)
_STATS_N = 256


def gradient_l1(rec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean L1 between the horizontal and vertical finite differences of ``rec`` and ``x`` (NCHW)."""
    dx = (rec[..., :, 1:] - rec[..., :, :-1]) - (x[..., :, 1:] - x[..., :, :-1])
    dy = (rec[..., 1:, :] - rec[..., :-1, :]) - (x[..., 1:, :] - x[..., :-1, :])
    return 0.5 * (dx.abs().mean() + dy.abs().mean())


_PALETTE = torch.tensor([PALETTE[c] for c in COLORS], dtype=torch.float32)[None, :, :, None, None]


def palette_loss(rec: torch.Tensor, x: torch.Tensor, tau: float = 200.0) -> torch.Tensor:
    """Per-pixel cross-entropy of ``rec``'s palette colour (logits ``-|rgb - colour|^2 / tau``) against the
    nearest palette colour of ``x`` (both in [-1, 1]); every rendered pixel's nearest colour is its object's."""
    rgb = rec.add(1).mul(127.5)[:, None]
    with torch.no_grad():
        labels = ((x.add(1).mul(127.5).round()[:, None] - _PALETTE) ** 2).sum(2).argmin(1)
    return F.cross_entropy(-((rgb - _PALETTE) ** 2).sum(2) / tau, labels)


def train_autoencoder(
    out_dir: Path,
    *,
    seed: int = 0,
    steps: int = 1500,
    minutes: float | None = None,
    batch_size: int = 32,
    lr: float = 1e-3,
    warmup: int = 50,
    latent_channels: int = 8,
    subpixel: bool = True,
    shortcut: bool = True,
    grad_weight: float = 1.0,
    palette_weight: float = 0.1,
    latent_noise: float = 0.1,
    kl_weight: float = 1e-5,
    ema_decay: float = 0.995,
    checkpoint_every: int = 100,
    threads: int | None = 1,
    ceiling_n: int = 200,
    init_from: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Train the autoencoder (from scratch, or continue from the ``init_from`` autoencoder folder's weights with a
    fresh optimizer); write ``out_dir/vae`` and ``out_dir/autoencoder.json``."""
    from diffusers import AutoencoderKL

    from cachesearch.embedded.scenes._vae import SubpixelAutoencoderKL, load_vae

    from .scenes import _batch
    from .scenes_decoder import ceiling

    if latent_channels < 1:
        raise ValueError(f"latent_channels must be >= 1, got {latent_channels}")
    out_dir, t_start, deadline = start_run(out_dir, threads=threads, minutes=minutes)
    torch.manual_seed(seed)
    if shortcut and not subpixel:
        raise ValueError("shortcut needs the sub-pixel class (subpixel=True)")
    config = vae_config(DEFAULT_SIZE, latent_channels=latent_channels)
    vae = SubpixelAutoencoderKL(**config, residual_shortcut=shortcut) if subpixel else AutoencoderKL(**config)
    if init_from is not None:  # a stock (nearest-neighbour) autoencoder's weights convert to the sub-pixel class
        start = load_vae(str(init_from), torch_dtype=torch.float32)
        if subpixel and not isinstance(start, SubpixelAutoencoderKL):
            start = SubpixelAutoencoderKL.from_nearest(start)
        if getattr(start.config, "residual_shortcut", False) != shortcut:
            raise ValueError(f"--init-from {init_from}: residual_shortcut {not shortcut} there, {shortcut} here")
        vae.load_state_dict(start.state_dict())
        log(f"[ae] initialised from {init_from}")
    params = list(vae.parameters())
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed + 4)
    state = load_checkpoint(out_dir / "checkpoint.pt", {"vae": vae}, ema, opt, gen)
    if state.step:
        log(f"[ae] resumed from step {state.step}")
    data_key = [seed, TRAIN_STREAM, _AE_PHASE]

    def loss_fn() -> torch.Tensor:
        x, _ = _batch(np.random.default_rng([*data_key, state.step]), batch_size, DEFAULT_SIZE)
        post = vae.encode(x).latent_dist
        z = post.mean + latent_noise * post.std * torch.randn(post.mean.shape, generator=gen)
        rec = vae.decode(z).sample
        kl = post.kl().mean() / post.mean[0].numel()
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + kl_weight * kl
        if grad_weight > 0:
            loss = loss + grad_weight * gradient_l1(rec, x)
        if palette_weight > 0:
            loss = loss + palette_weight * palette_loss(rec, x)
        return loss

    def with_ema(fn: Callable[[], object]) -> object:
        with torch.no_grad():
            live = [p.detach().clone() for p in params]
            for p, e in zip(params, ema, strict=True):
                p.copy_(e)
        try:
            return fn()
        finally:
            with torch.no_grad():
                for p, v in zip(params, live, strict=True):
                    p.copy_(v)

    state = train_loop(tag="ae", loss_fn=loss_fn, modules={"vae": vae}, params=params, ema=ema, opt=opt, gen=gen,
                       state=state, planned=steps, lr=lr, ema_decay=ema_decay, deadline=deadline, warmup=warmup,
                       checkpoint_every=checkpoint_every, ckpt_path=out_dir / "checkpoint.pt",
                       on_checkpoint=lambda: with_ema(lambda: vae.save_pretrained(out_dir / "vae",
                                                                                  safe_serialization=True)),
                       log=log)
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        for p, e in zip(params, ema, strict=True):
            p.copy_(e)
        x, _ = _batch(np.random.default_rng([seed, TRAIN_STREAM, _STATS_PHASE]), _STATS_N, DEFAULT_SIZE)
        z = vae.encode(x).latent_dist.mean
        mse = F.mse_loss(vae.decode(z).sample.clamp(-1, 1), x).item()
    stats = {"heldout_mse": round(mse, 6), "latent_mean": round(z.mean().item(), 4),
             "latent_std": round(z.std().item(), 4)}
    vae.register_to_config(scaling_factor=round(1.0 / stats["latent_std"], 5))
    vae.save_pretrained(out_dir / "vae", safe_serialization=True)
    roundtrip = ceiling(vae, ceiling_n)
    info = {
        "model": "scenes autoencoder (textures)", "class": type(vae).__name__, "seed": seed,
        "latent_channels": latent_channels, "residual_shortcut": shortcut,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
        "init_from": None if init_from is None else f"{Path(init_from).parent.name}/{Path(init_from).name}",
        "steps": state.step, "steps_scheduled": state.steps, "steps_planned": steps,
        "stopped_early": state.stopped_early, "batch_size": batch_size, "lr": lr, "warmup": warmup,
        "grad_weight": grad_weight, "palette_weight": palette_weight, "latent_noise": latent_noise,
        "kl_weight": kl_weight, "ema_decay": ema_decay,
        "objective": "L1 + MSE + grad_weight x finite-difference L1 + palette_weight x palette cross-entropy "
                     "+ kl_weight x KL, decoding the posterior mean + latent_noise x std",
        "final_loss": round(state.run_loss, 5), "seconds": round(state.elapsed, 1), **stats,
        "vae_scaling_factor": vae.config.scaling_factor, "roundtrip_checker": roundtrip,
        "wall_seconds_this_invocation": round(time.time() - t_start, 1), "hardware": hardware("cpu"),
        "params": sum(p.numel() for p in params),
    }
    write_record(out_dir / "autoencoder.json", info, log)
    return info


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--latent-channels", type=int, default=8)
    ap.add_argument("--nearest", action="store_true",
                    help="stock AutoencoderKL decoder (nearest-neighbour upsampling) instead of sub-pixel")
    ap.add_argument("--no-shortcut", action="store_true",
                    help="without the residual space-to-channel shortcut (see _vae.SubpixelAutoencoderKL)")
    ap.add_argument("--grad-weight", type=float, default=1.0)
    ap.add_argument("--palette-weight", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--init-from", type=Path, default=None, help="continue from this autoencoder folder's weights")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    train_autoencoder(a.out, seed=a.seed, steps=a.steps, minutes=a.minutes, batch_size=a.batch_size, lr=a.lr,
                      warmup=a.warmup, latent_channels=a.latent_channels, subpixel=not a.nearest,
                      shortcut=not (a.nearest or a.no_shortcut),
                      grad_weight=a.grad_weight, palette_weight=a.palette_weight, threads=a.threads,
                      init_from=a.init_from, log=lambda s: print(s, flush=True))


if __name__ == "__main__":
    main()
