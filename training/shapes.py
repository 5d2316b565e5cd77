"""Train the embedded ``shapes`` text-to-image model from scratch (seeded, reproducible, CPU-friendly).

Phase 1 trains a tiny ``AutoencoderKL`` (32 px RGB <-> 16x16x4 latents) on procedural renders; phase 2 trains
the ``UNet2DConditionModel`` and the small ``CLIPTextModel`` jointly (v-prediction, zero-terminal-SNR linear
schedule, see ``cachesearch.embedded.shapes._components.scheduler_config``) with 10 % empty-prompt dropout (for
classifier-free guidance) and an EMA of the weights, which is what ships. Training data are drawn from
``np.random.default_rng([seed, TRAIN_STREAM, phase])``; the quality gate uses ``EVAL_STREAM`` prompts and
generator seeds from ``EVAL_SEED_BASE`` up, which training never uses.

Usage (the defaults are the settings of the shipped weights; ``--minutes`` caps wall time instead)::

    python -m training.shapes --out /tmp/shapes-run [--steps 2594] [--minutes 55]   # from the repository root

Same seed, steps, thread count and hardware give the same weights. A run checkpoints every
``checkpoint_every`` steps into ``out/checkpoint.pt`` and resumes from it when restarted with the same
arguments.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cachesearch.embedded.shapes._components import scheduler_config, text_encoder_config, unet_config, vae_config
from cachesearch.embedded.shapes._data import DEFAULT_SIZE, TRAIN_STREAM, all_captions, sample, to_model_input

from ._loop import fit_steps, hardware, lr_at, param_counts, save_ckpt, write_record
from ._tokenizer_files import build_tokenizer_files, load_tokenizer

__all__ = ["train"]

SHIPPED_VAE_STEPS = 784
"""Autoencoder steps of the shipped weights."""

SHIPPED_UNET_STEPS = 2594
"""UNet + text-encoder steps of the shipped weights (defaults reproduce them: seed 0, no time budget)."""

_VAE_PHASE, _UNET_PHASE = 0, 1
_VAE_PACE_STEPS = 40  # steps timed before a time budget fixes the VAE schedule length (< its 50 warm-up steps)
_VAE_STATS_N = 256  # renders used for the VAE's held-out MSE and latent statistics (scaling factor)
_PACE_STEPS = 150  # same for the UNet (< its 200 warm-up steps, so the schedule so far does not depend on it)


def _batch(rng: np.random.Generator, n: int, size: int) -> tuple[torch.Tensor, list[str]]:
    """Render ``n`` random pairs as a float tensor (n, 3, size, size) in [-1, 1] and their captions."""
    imgs = np.empty((n, size, size, 3), dtype=np.uint8)
    texts = []
    for i in range(n):
        imgs[i], t = sample(rng, size=size)
        texts.append(t)
    return to_model_input(imgs), texts


def _train_vae(
    vae: torch.nn.Module,
    *,
    seed: int,
    steps: int,
    seconds: float | None,
    batch_size: int,
    size: int,
    device: str,
    log: Callable[[str], None],
) -> dict:
    """Train the autoencoder (L1 + MSE reconstruction, small KL); return stats incl. the latent std."""
    rng = np.random.default_rng([seed, TRAIN_STREAM, _VAE_PHASE])
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    kl_weight = 1e-4
    t0 = time.time()
    run = 0.0
    vae.train()
    planned = steps
    step = 0
    while step < steps:
        if step == _VAE_PACE_STEPS:
            left = None if seconds is None else seconds - (time.time() - t0)
            steps = fit_steps(planned, step, (time.time() - t0) / step, left)
            log(f"[vae] schedule laid out over {steps} steps (planned {planned})")
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, 1e-3, 50)
        x, _ = _batch(rng, batch_size, size)
        x = x.to(device)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        kl = post.kl().mean() / post.mean[0].numel()
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run = loss.item() if step == 0 else 0.98 * run + 0.02 * loss.item()
        if step % 100 == 0 or step == steps - 1:
            log(f"[vae] step {step}/{steps} loss {run:.4f} ({time.time() - t0:.0f}s)")
        step += 1
    vae.eval()
    with torch.no_grad():
        x, _ = _batch(np.random.default_rng([seed, TRAIN_STREAM, 99]), _VAE_STATS_N, size)
        x = x.to(device)
        z = vae.encode(x).latent_dist.mean
        rec = vae.decode(z).sample.clamp(-1, 1)
        mse = F.mse_loss(rec, x).item()
    return {
        "steps": step,
        "steps_planned": planned,
        "seconds": round(time.time() - t0, 1),
        "final_loss": round(run, 5),
        "heldout_mse": round(mse, 6),
        "latent_mean": round(z.mean().item(), 4),
        "latent_std": round(z.std().item(), 4),
    }


def train(
    out_dir: Path,
    *,
    seed: int = 0,
    minutes: float | None = None,
    steps: int = SHIPPED_UNET_STEPS,
    device: str = "cpu",
    log: Callable[[str], None] = print,
    vae_steps: int = SHIPPED_VAE_STEPS,
    batch_size: int = 64,
    vae_batch_size: int = 32,
    lr: float = 1e-3,
    min_snr_gamma: float | None = None,
    cfg_dropout: float = 0.1,
    ema_decay: float = 0.995,
    checkpoint_every: int = 250,
    size: int = DEFAULT_SIZE,
    threads: int | None = 2,
) -> None:
    """Train VAE, then UNet + text encoder; write ``out_dir/pipeline`` (diffusers) and ``training.json``.

    Args:
        out_dir: output folder (created): ``pipeline/``, ``training.json``, ``checkpoint.pt``, ``vae.pt``.
        seed: seeds torch and the data streams.
        minutes: optional wall-clock cap for the whole run (VAE gets at most 12 % of it); the steps actually
            run are recorded. ``None`` = run all steps (exactly reproducible).
        steps: UNet/text-encoder optimizer steps (the learning-rate schedule is laid out over these).
        device: torch device string.
        log: callable receiving progress lines.
        vae_steps: autoencoder optimizer steps.
        batch_size: UNet batch size.
        vae_batch_size: autoencoder batch size.
        lr: peak learning rate (AdamW; warm-up then cosine to 10 %).
        min_snr_gamma: Min-SNR loss weighting (``min(SNR, gamma) / SNR`` for epsilon, ``/ (SNR + 1)`` for v);
            ``None``: plain MSE on the scheduler's prediction target (the default: Min-SNR would zero the
            zero-SNR step, where the model learns the caption's colors).
        cfg_dropout: probability of replacing a caption by the empty prompt.
        ema_decay: EMA decay of the shipped weights.
        checkpoint_every: checkpoint (and write an intermediate pipeline) every this many steps.
        size: image resolution in pixels.
        threads: ``torch.set_num_threads`` value on CPU (``None`` leaves it).
    """
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    if min(steps, vae_steps, batch_size, vae_batch_size, checkpoint_every) < 1:
        raise ValueError("steps, vae_steps, batch sizes and checkpoint_every must be >= 1")
    if not 0.0 <= cfg_dropout < 1.0:
        raise ValueError(f"cfg_dropout must be in [0, 1), got {cfg_dropout}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if threads is not None and device == "cpu":
        torch.set_num_threads(threads)
    t_start = time.time()
    deadline = None if minutes is None else t_start + 60.0 * minutes
    torch.manual_seed(seed)

    # --- tokenizer (built from the vocabulary, deterministic) ---
    tok_dir = out_dir / "pipeline" / "tokenizer"
    build_tokenizer_files(tok_dir)
    tokenizer = load_tokenizer(tok_dir)

    # --- phase 1: VAE ---
    vae_path = out_dir / "vae.pt"
    vae = AutoencoderKL(**vae_config(size)).to(device)
    vae_loaded = vae_path.exists()
    if vae_loaded:
        blob = torch.load(vae_path, map_location=device, weights_only=False)
        vae.load_state_dict(blob["state_dict"])
        vae_stats = blob["stats"]
        log(f"[vae] loaded {vae_path} ({vae_stats})")
    else:
        vae_seconds = None if minutes is None else 0.12 * 60.0 * minutes
        vae_stats = _train_vae(
            vae, seed=seed, steps=vae_steps, seconds=vae_seconds, batch_size=vae_batch_size, size=size, device=device,
            log=log,
        )
        save_ckpt(vae_path, {"state_dict": vae.state_dict(), "stats": vae_stats})
        log(f"[vae] done {vae_stats}")
    vae.eval().requires_grad_(False)
    scaling = round(1.0 / vae_stats["latent_std"], 5)
    vae.register_to_config(scaling_factor=scaling)

    # --- phase 2: UNet + text encoder ---
    torch.manual_seed(seed + 1)
    te_kwargs = text_encoder_config(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)
    te_cfg = CLIPTextConfig(**te_kwargs)
    text_encoder = CLIPTextModel(te_cfg).to(device)
    unet = UNet2DConditionModel(**unet_config(size // 2, te_cfg.hidden_size)).to(device)
    scheduler = DDIMScheduler(**scheduler_config())
    params = list(unet.parameters()) + list(text_encoder.parameters())
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    rng = np.random.default_rng([seed, TRAIN_STREAM, _UNET_PHASE])
    gen = torch.Generator().manual_seed(seed + 2)
    start_step, run_loss, elapsed_before, scheduled_steps = 0, 0.0, 0.0, None
    ckpt_path = out_dir / "checkpoint.pt"
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        unet.load_state_dict(ck["unet"])
        text_encoder.load_state_dict(ck["text_encoder"])
        for e, v in zip(ema, ck["ema"], strict=True):
            e.copy_(v)
        opt.load_state_dict(ck["opt"])
        rng.bit_generator.state = ck["rng"]
        gen.set_state(ck["gen"])
        start_step, run_loss, elapsed_before = ck["step"], ck["run_loss"], ck["elapsed"]
        scheduled_steps = ck["steps"] if start_step >= _PACE_STEPS else None
        log(f"[unet] resumed from step {start_step}")

    texts = [""] + [c.text() for c in all_captions()]
    ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids.to(device)
    row = {t: i for i, t in enumerate(texts)}
    acp = scheduler.alphas_cumprod.to(device)
    v_pred = scheduler.config.prediction_type == "v_prediction"

    def make_pipe() -> StableDiffusionPipeline:
        u = UNet2DConditionModel.from_config(unet.config)
        te = CLIPTextModel(te_cfg)
        shadow = list(u.parameters()) + list(te.parameters())
        with torch.no_grad():
            for s, e in zip(shadow, ema, strict=True):
                s.copy_(e.detach().cpu())
        return StableDiffusionPipeline(
            vae=vae.to("cpu"), text_encoder=te, tokenizer=tokenizer, unet=u, scheduler=scheduler,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )

    t0 = time.time()
    step = start_step
    unet.train()
    text_encoder.train()
    stopped_early = False
    planned = steps
    steps = scheduled_steps or steps
    while step < steps:
        if step == _PACE_STEPS and step > start_step:
            left = None if deadline is None else deadline - time.time()
            steps = fit_steps(planned, step, (time.time() - t0) / (step - start_step), left)
            log(f"[unet] schedule laid out over {steps} steps (planned {planned})")
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, 200)
        x, caps = _batch(rng, batch_size, size)
        drop = rng.random(batch_size) < cfg_dropout
        rows = torch.tensor([0 if d else row[c] for c, d in zip(caps, drop, strict=True)], device=device)
        with torch.no_grad():
            z = vae.encode(x.to(device)).latent_dist.mean * scaling
        noise = torch.randn(z.shape, generator=gen).to(device)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch_size,), generator=gen).to(device)
        zt = scheduler.add_noise(z, noise, t)
        target = scheduler.get_velocity(z, noise, t) if v_pred else noise
        cond = text_encoder(ids[rows])[0]
        pred = unet(zt, t, encoder_hidden_states=cond).sample
        per_sample = (pred - target).pow(2).mean(dim=(1, 2, 3))
        if min_snr_gamma is not None:
            snr = acp[t] / (1 - acp[t]).clamp(min=1e-8)
            per_sample = per_sample * snr.clamp(max=min_snr_gamma) / (snr + 1 if v_pred else snr)
        loss = per_sample.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        d = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema, [p.detach() for p in params], 1.0 - d)
        run_loss = loss.item() if step == 0 else 0.99 * run_loss + 0.01 * loss.item()
        step += 1
        elapsed = elapsed_before + time.time() - t0
        if step % 50 == 0 or step == steps:
            log(f"[unet] step {step}/{steps} loss {run_loss:.4f} lr {opt.param_groups[0]['lr']:.2e} "
                f"({elapsed:.0f}s, {(time.time() - t0) / (step - start_step):.2f}s/step)")
        timeout = deadline is not None and time.time() > deadline
        if step % checkpoint_every == 0 or step == steps or timeout:
            save_ckpt(ckpt_path, {
                "unet": unet.state_dict(), "text_encoder": text_encoder.state_dict(), "ema": ema,
                "opt": opt.state_dict(), "rng": rng.bit_generator.state, "gen": gen.get_state(),
                "step": step, "steps": steps, "run_loss": run_loss, "elapsed": elapsed,
            })
            make_pipe().save_pretrained(out_dir / "pipeline", safe_serialization=True)
            vae.to(device)
            log(f"[unet] checkpoint at step {step}")
        if timeout:
            log(f"[unet] time budget reached at step {step}")
            stopped_early = True
            break

    info = {
        "seed": seed,
        "size": size,
        "vae": vae_stats,
        "vae_scaling_factor": scaling,
        "vae_loaded_from": str(vae_path) if vae_loaded else None,
        "unet_steps": step,
        "unet_steps_scheduled": steps,
        "unet_steps_planned": planned,
        "stopped_early": stopped_early,
        "batch_size": batch_size,
        "lr": lr,
        "cfg_dropout": cfg_dropout,
        "min_snr_gamma": min_snr_gamma,
        "ema_decay": ema_decay,
        "final_loss_unet": round(run_loss, 5),
        "unet_seconds": round(elapsed_before + time.time() - t0, 1),
        "wall_seconds_this_invocation": round(time.time() - t_start, 1),
        "hardware": hardware(device),
        "params": param_counts(unet=unet, text_encoder=text_encoder, vae=vae),
    }
    write_record(out_dir / "training.json", info, log)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: ``python -m training.shapes --out DIR``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=SHIPPED_UNET_STEPS)
    ap.add_argument("--vae-steps", type=int, default=SHIPPED_VAE_STEPS)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--checkpoint-every", type=int, default=250)
    args = ap.parse_args(argv)
    train(
        args.out, seed=args.seed, minutes=args.minutes, steps=args.steps, device=args.device,
        vae_steps=args.vae_steps, batch_size=args.batch_size, lr=args.lr,
        checkpoint_every=args.checkpoint_every,
        log=lambda s: print(s, flush=True),
    )


if __name__ == "__main__":
    main()
