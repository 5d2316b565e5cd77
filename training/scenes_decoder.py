"""Fine-tune the decoder of a shipped ``scenes``-family autoencoder with its encoder frozen.

The autoencoder of ``embedded:scenes`` (also used by ``embedded:shapes-flux``) had 495 training steps, on
posterior *samples*: its decoder learned to undo latent noise of about a fifth of the latents' spread and so
returns blurred, desaturated objects even from the clean latents the denoisers are trained on. Ground-truth renders
sent through encode -> decode passed the scenes checker's colour test on only 63 % of the gate's 200 pairs, which
bounded both models' quality gates. This trainer keeps the encoder (so every latent, the scaling factor and both
denoisers stay valid) and trains ``post_quant_conv`` + decoder on the encoder's posterior mean plus a small
amount of noise (``latent_noise`` x the posterior std, for robustness to the denoisers' errors), L1 + MSE on
fresh procedural scenes, with the shared paced/EMA/resumable loop. The result is the ``vae`` folder of the
pipelines; :func:`ceiling` measures the checker on round-tripped ground truth before and after.

Usage::

    python -m training.scenes_decoder --pipeline src/cachesearch/embedded/scenes/pipeline --out RUN \\
        [--steps 2000] [--minutes 40] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cachesearch.embedded.scenes._data import TRAIN_STREAM
from cachesearch.embedded.shapes._data import COLORS, PALETTE, to_model_input

from ._loop import hardware, load_checkpoint, start_run, train_loop, write_record

__all__ = ["ceiling", "train_decoder"]

_DECODER_PHASE = 3  # the training stream's phases 0-2 are the first VAE, the training set and the UNet


def ceiling(vae: torch.nn.Module, n: int = 200, *, batch_size: int = 50) -> dict:
    """The scenes checker on the gate's ``n`` held-out ground-truth renders sent through encode (mean) -> decode:
    the best colour/shape accuracy a denoiser that reproduced the encoder's latents exactly could reach."""
    from cachesearch.embedded.scenes._checker import check
    from cachesearch.embedded.scenes._data import render
    from cachesearch.embedded.scenes._gate import eval_pairs
    from cachesearch.embedded.shapes._gate import accuracy

    pairs = eval_pairs(n)
    results, se, count = [], 0.0, 0
    with torch.no_grad():
        for start in range(0, n, batch_size):
            chunk = pairs[start:start + batch_size]
            imgs = np.stack([render(c, seed=s) for c, s in chunk])
            x = to_model_input(imgs)
            rec = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
            out = rec.add(1).mul(127.5).round().byte().permute(0, 2, 3, 1).numpy()
            results += [check(o, c) for o, (c, _) in zip(out, chunk, strict=True)]
            se += float(((out.astype(np.float64) - imgs) ** 2).sum())
            count += imgs.size
    acc = accuracy
    return {"n": n, "color_both_acc": acc([r.colors_ok for r in results]), "fg_acc": acc([r.fg_ok for r in results]),
            "shape_acc": acc([r.shape_ok for r in results]), "rgb_rmse": round((se / count) ** 0.5, 2)}


def train_decoder(
    pipeline: Path,
    out_dir: Path,
    *,
    seed: int = 0,
    steps: int = 2000,
    minutes: float | None = None,
    batch_size: int = 32,
    lr: float = 5e-4,
    warmup: int = 50,
    latent_noise: float = 0.1,
    palette_weight: float = 0.0,
    palette_tau: float = 200.0,
    ema_decay: float = 0.995,
    checkpoint_every: int = 100,
    threads: int | None = 2,
    ceiling_n: int = 200,
    log: Callable[[str], None] = print,
) -> dict:
    """Fine-tune ``pipeline/vae``'s decoder; write ``out_dir/vae`` (EMA weights) and ``out_dir/decoder.json``."""
    from cachesearch.embedded.scenes._vae import load_vae

    from .scenes import _batch

    out_dir, t_start, deadline = start_run(out_dir, threads=threads, minutes=minutes)
    vae = load_vae(str(Path(pipeline) / "vae"), torch_dtype=torch.float32)
    vae.requires_grad_(False).eval()
    before = ceiling(vae, ceiling_n)
    log(f"[decoder] before: {before}")
    trainable = {"post_quant_conv": vae.post_quant_conv, "decoder": vae.decoder}
    params = [p for m in trainable.values() for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed + 3)
    state = load_checkpoint(out_dir / "checkpoint.pt", trainable, ema, opt, gen)
    if state.step:
        log(f"[decoder] resumed from step {state.step}")
    # the scenes of step k are drawn from a stream keyed by k, so a resumed run sees the same data
    data_key = [seed, TRAIN_STREAM, _DECODER_PHASE]

    palette = torch.tensor([PALETTE[c] for c in COLORS], dtype=torch.float32)[None, :, :, None, None]

    def loss_fn() -> torch.Tensor:
        x, _ = _batch(np.random.default_rng([*data_key, state.step]), batch_size, vae.config.sample_size)
        with torch.no_grad():
            post = vae.encode(x).latent_dist
            z = post.mean + latent_noise * post.std * torch.randn(post.mean.shape, generator=gen)
        rec = vae.decode(z).sample
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x)
        if palette_weight > 0:  # every rendered pixel's nearest palette colour is its object's (or background's)
            rgb = rec.add(1).mul(127.5)[:, None]
            with torch.no_grad():
                labels = ((x.add(1).mul(127.5).round()[:, None] - palette) ** 2).sum(2).argmin(1)
            loss = loss + palette_weight * F.cross_entropy(-((rgb - palette) ** 2).sum(2) / palette_tau, labels)
        return loss

    def save() -> None:
        with torch.no_grad():
            live = [p.detach().clone() for p in params]
            for p, e in zip(params, ema, strict=True):
                p.copy_(e)
            vae.save_pretrained(out_dir / "vae", safe_serialization=True)
            for p, v in zip(params, live, strict=True):
                p.copy_(v)

    state = train_loop(tag="decoder", loss_fn=loss_fn, modules=trainable, params=params, ema=ema, opt=opt, gen=gen,
                       state=state, planned=steps, lr=lr, ema_decay=ema_decay, deadline=deadline, warmup=warmup,
                       checkpoint_every=checkpoint_every, ckpt_path=out_dir / "checkpoint.pt", on_checkpoint=save,
                       log=log)
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        for p, e in zip(params, ema, strict=True):
            p.copy_(e)
    after = ceiling(vae, ceiling_n)
    log(f"[decoder] after: {after}")
    info = {
        "model": "scenes autoencoder, decoder fine-tune (encoder frozen)", "seed": seed,
        "init_from": Path(pipeline).name, "steps": state.step, "steps_scheduled": state.steps,
        "steps_planned": steps, "stopped_early": state.stopped_early, "batch_size": batch_size, "lr": lr,
        "warmup": warmup, "latent_noise": latent_noise,
        "palette_weight": palette_weight, "palette_tau": palette_tau, "ema_decay": ema_decay,
        "objective": "L1 + MSE (+ palette_weight x palette-label cross-entropy) on the encoder's posterior mean "
                     "+ latent_noise x std",
        "final_loss": round(state.run_loss, 5), "seconds": round(state.elapsed, 1),
        "ceiling_before": before, "ceiling_after": after,
        "wall_seconds_this_invocation": round(time.time() - t_start, 1), "hardware": hardware("cpu"),
        "params_trained": sum(p.numel() for p in params),
    }
    write_record(out_dir / "decoder.json", info, log)
    return info


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pipeline", type=Path, required=True, help="pipeline folder whose vae/ is fine-tuned")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--latent-noise", type=float, default=0.1)
    ap.add_argument("--palette-weight", type=float, default=0.0,
                    help="weight of the per-pixel palette-label cross-entropy (logits -|rgb - colour|^2 / tau)")
    ap.add_argument("--palette-tau", type=float, default=200.0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    train_decoder(a.pipeline, a.out, seed=a.seed, steps=a.steps, minutes=a.minutes, batch_size=a.batch_size,
                  lr=a.lr, latent_noise=a.latent_noise, palette_weight=a.palette_weight,
                  palette_tau=a.palette_tau, threads=a.threads)


if __name__ == "__main__":
    main()
