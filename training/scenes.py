"""Train the embedded ``scenes`` text-to-image model (seeded, CPU-friendly).

The autoencoder comes first: without ``--vae`` a plain 4-channel one is trained here (the shipped model's recipe);
``--vae`` takes one trained by :mod:`training.scenes_autoencoder` (sub-pixel decoder with the residual shortcut, 64 px
<-> 16x16x8, carries the objects' textures). Then a fixed training set is rendered once and encoded once (the
autoencoder is frozen, so per-step encoding would recompute the same latents), and the UNet + text encoder are trained
on those latents with fresh noise every step: v-prediction, zero-terminal-SNR DDIM schedule, 10 % empty-prompt dropout
and an EMA of the weights, which is what ships (``--low-t-frac F --low-t-max T`` draws a share F of each batch's noise
levels below T, where textures are decided; ``--textures``/``--background`` pick the data variant, see
``cachesearch.embedded.scenes._data``). Architecture and recipe are those of ``shapes`` (:mod:`training.shapes`) except
the data, the autoencoder and the UNet's latent channels (the autoencoder's). ``--init-from`` continues from a pipeline
folder.

Usage::

    python -m training.scenes --out /tmp/scenes-run [--vae AE_RUN/vae] [--init-from PIPELINE]
        [--minutes 60] [--textures coarse] [--background clouds] [--low-t-frac 0.25 --low-t-max 150]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cachesearch.embedded.scenes._components import LATENT_FACTOR, WORDS, vae_config
from cachesearch.embedded.scenes._data import BACKGROUNDS, DEFAULT_SIZE, TEXTURE_SCALES, TRAIN_STREAM, sample
from cachesearch.embedded.scenes._vae import load_vae
from cachesearch.embedded.shapes._components import scheduler_config, text_encoder_config, unet_config
from cachesearch.embedded.shapes._data import to_model_input

from ._loop import (
    fit_steps,
    hardware,
    load_checkpoint,
    lr_at,
    param_counts,
    save_ckpt,
    start_run,
    train_loop,
    write_record,
)
from ._tokenizer_files import build_tokenizer_files, load_tokenizer

__all__ = ["save_pipeline", "train"]

_VAE_PHASE, _SET_PHASE, _UNET_PHASE = 0, 1, 2
_PACE = 40  # VAE phase (the UNet phase paces in training._loop)
_VAE_STATS_N = 256  # held-out scenes for the autoencoder's MSE and latent std


def _batch(
    rng: np.random.Generator, n: int, size: int, textures: str = "fine", background: str = "gradient",
) -> tuple[torch.Tensor, list[str]]:
    imgs = np.empty((n, size, size, 3), dtype=np.uint8)
    texts = []
    for i in range(n):
        imgs[i], t = sample(rng, size=size, textures=textures, background=background)
        texts.append(t)
    return to_model_input(imgs), texts


def _train_vae(vae, *, seed, steps, seconds, batch_size, size, log) -> dict:
    """L1 + MSE reconstruction with a small KL; returns stats incl. the latent std (the scaling factor)."""
    rng = np.random.default_rng([seed, TRAIN_STREAM, _VAE_PHASE])
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    t0, run, planned, step = time.time(), 0.0, steps, 0
    vae.train()
    while step < steps:
        if step == _PACE:
            left = None if seconds is None else seconds - (time.time() - t0)
            steps = fit_steps(planned, step, (time.time() - t0) / step, left)
            log(f"[vae] schedule laid out over {steps} steps (planned {planned})")
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, 1e-3, 50)
        x, _ = _batch(rng, batch_size, size)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        kl = post.kl().mean() / post.mean[0].numel()
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + 1e-4 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run = loss.item() if step == 0 else 0.98 * run + 0.02 * loss.item()
        step += 1
        if step % 50 == 0 or step == steps:
            log(f"[vae] step {step}/{steps} loss {run:.4f} ({time.time() - t0:.0f}s)")
    vae.eval()
    with torch.no_grad():
        x, _ = _batch(np.random.default_rng([seed, TRAIN_STREAM, 99]), _VAE_STATS_N, size)
        z = vae.encode(x).latent_dist.mean
        mse = F.mse_loss(vae.decode(z).sample.clamp(-1, 1), x).item()
    return {"steps": step, "steps_planned": planned, "seconds": round(time.time() - t0, 1),
            "final_loss": round(run, 5), "heldout_mse": round(mse, 6),
            "latent_mean": round(z.mean().item(), 4), "latent_std": round(z.std().item(), 4)}


def save_pipeline(pipe, folder: Path) -> None:
    """``save_pretrained`` with the autoencoder named by its diffusers base class in ``model_index.json``: a
    :class:`._vae.SubpixelAutoencoderKL` (its own ``config.json`` names it) must be passed to ``from_pretrained``
    (``scenes.load_pipeline`` does); diffusers refuses a component whose module path is not a library."""
    pipe.save_pretrained(folder, safe_serialization=True)
    index = Path(folder) / "model_index.json"
    meta = json.loads(index.read_text(encoding="utf-8"))
    meta["vae"] = ["diffusers", "AutoencoderKL"]
    index.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _load_matching(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Load the entries of ``state`` whose shapes match ``module``'s (the rest keep their fresh initialisation,
    e.g. a UNet's ``conv_in``/``conv_out`` when the autoencoder's latent channels changed); returns those kept
    fresh. Any key ``state`` lacks or ``module`` lacks is an error: only shapes may differ."""
    own = module.state_dict()
    if own.keys() != state.keys():
        raise ValueError(f"init weights do not fit this architecture: {sorted(own.keys() ^ state.keys())[:5]}")
    fresh = [k for k in own if own[k].shape != state[k].shape]
    module.load_state_dict({k: (own[k] if k in fresh else v) for k, v in state.items()})
    return fresh


def train(
    out_dir: Path,
    *,
    seed: int = 0,
    minutes: float | None = None,
    steps: int = 3000,
    vae_steps: int = 600,
    train_set: int = 16384,
    batch_size: int = 64,
    vae_batch_size: int = 32,
    lr: float = 1e-3,
    cfg_dropout: float = 0.1,
    ema_decay: float = 0.995,
    checkpoint_every: int = 250,
    size: int = DEFAULT_SIZE,
    threads: int | None = 2,
    init_from: Path | None = None,
    vae_dir: Path | None = None,
    warmup: int = 200,
    low_t_frac: float = 0.0,
    low_t_max: int = 200,
    textures: str = "fine",
    background: str = "gradient",
    log: Callable[[str], None] = print,
) -> None:
    """Train the autoencoder, then UNet + text encoder; write ``out_dir/pipeline`` and ``training.json``.

    ``vae_dir`` names a trained autoencoder folder (e.g. :mod:`training.scenes_autoencoder`'s) to use frozen instead
    of training one; otherwise ``init_from``'s is used, and without either one is trained here. The UNet's latent
    channels follow the autoencoder's; ``init_from`` weights whose shapes differ (``conv_in``/``conv_out`` after a
    change of latent channels) start fresh and are listed in ``training.json`` (``init_fresh``).

    ``minutes`` caps the whole run (the autoencoder gets at most 20 % of it); the steps actually run are
    recorded, and re-running with them and no time budget reproduces the run on the same hardware/threads.
    A run checkpoints into ``out_dir/checkpoint.pt`` and resumes from it.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    out_dir, t_start, deadline = start_run(out_dir, threads=threads, minutes=minutes)
    torch.manual_seed(seed)
    tok_dir = out_dir / "pipeline" / "tokenizer"
    build_tokenizer_files(tok_dir, WORDS)
    tokenizer = load_tokenizer(tok_dir, WORDS)

    vae_path = out_dir / "vae.pt"
    vae_from = Path(vae_dir) if vae_dir is not None else None if init_from is None else Path(init_from) / "vae"
    if vae_from is not None and not vae_path.exists():  # a trained (frozen) autoencoder: given, or the init's
        vae = load_vae(str(vae_from), torch_dtype=torch.float32)
        scaling = vae.config.scaling_factor
        vae_stats = {"from": f"{vae_from.parent.name}/{vae_from.name}", "latent_std": round(1.0 / scaling, 4)}
        log(f"[vae] loaded {vae_from}")
    else:
        vae = AutoencoderKL(**vae_config(size))
        if vae_path.exists():
            blob = torch.load(vae_path, weights_only=False)
            vae.load_state_dict(blob["state_dict"])
            vae_stats = blob["stats"]
            log(f"[vae] loaded {vae_path}")
        else:
            vae_stats = _train_vae(vae, seed=seed, steps=vae_steps,
                                   seconds=None if minutes is None else 12.0 * minutes,
                                   batch_size=vae_batch_size, size=size, log=log)
            save_ckpt(vae_path, {"state_dict": vae.state_dict(), "stats": vae_stats})
            log(f"[vae] done {vae_stats}")
        scaling = round(1.0 / vae_stats["latent_std"], 5)
    vae.eval().requires_grad_(False)
    vae.register_to_config(scaling_factor=scaling)

    # fixed training set, encoded once
    set_path = out_dir / "latents.pt"
    if set_path.exists():
        blob = torch.load(set_path, weights_only=False)
        latents, captions = blob["latents"], blob["captions"]
    else:
        t0 = time.time()
        rng = np.random.default_rng([seed, TRAIN_STREAM, _SET_PHASE])
        chunks, captions = [], []
        with torch.no_grad():
            for start in range(0, train_set, 256):
                x, caps = _batch(rng, min(256, train_set - start), size, textures, background)
                chunks.append(vae.encode(x).latent_dist.mean * scaling)
                captions += caps
        latents = torch.cat(chunks)
        save_ckpt(set_path, {"latents": latents, "captions": captions})
        log(f"[set] {len(captions)} scenes encoded in {time.time() - t0:.0f}s")
    uniq = [""] + sorted(set(captions))
    ids = tokenizer(uniq, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    row_of = {t: i for i, t in enumerate(uniq)}
    rows_all = torch.tensor([row_of[c] for c in captions])

    torch.manual_seed(seed + 1)
    te_cfg = CLIPTextConfig(**text_encoder_config(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id))
    text_encoder = CLIPTextModel(te_cfg)
    unet = UNet2DConditionModel(**unet_config(size // LATENT_FACTOR, te_cfg.hidden_size,
                                              latent_channels=vae.config.latent_channels))
    fresh: list[str] = []
    if init_from is not None:  # continue from an earlier run's pipeline (its EMA weights), fresh optimizer
        fresh = _load_matching(unet, UNet2DConditionModel.from_pretrained(str(Path(init_from) / "unet")).state_dict())
        text_encoder.load_state_dict(CLIPTextModel.from_pretrained(str(Path(init_from) / "text_encoder")).state_dict())
        log(f"[unet] initialised from {init_from}" + (f" (kept fresh, other shape: {fresh})" if fresh else ""))
    scheduler = DDIMScheduler(**scheduler_config())
    params = list(unet.parameters()) + list(text_encoder.parameters())
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed + 2)
    named = {"unet": unet, "text_encoder": text_encoder}
    state = load_checkpoint(out_dir / "checkpoint.pt", named, ema, opt, gen)
    if state.step:
        log(f"[unet] resumed from step {state.step}")

    def make_pipe() -> StableDiffusionPipeline:
        u = UNet2DConditionModel.from_config(unet.config)
        te = CLIPTextModel(te_cfg)
        with torch.no_grad():
            for s, e in zip(list(u.parameters()) + list(te.parameters()), ema, strict=True):
                s.copy_(e)
        return StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tokenizer, unet=u, scheduler=scheduler,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)

    n = latents.shape[0]

    def loss_fn() -> torch.Tensor:
        idx = torch.randint(0, n, (batch_size,), generator=gen)
        z = latents[idx]
        drop = torch.rand(batch_size, generator=gen) < cfg_dropout
        rows = torch.where(drop, torch.zeros_like(idx), rows_all[idx])
        noise = torch.randn(z.shape, generator=gen)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch_size,), generator=gen)
        if low_t_frac > 0:  # a share of the batch at low noise, where textures are decided
            low = torch.rand(batch_size, generator=gen) < low_t_frac
            t = torch.where(low, torch.randint(0, low_t_max, (batch_size,), generator=gen), t)
        pred = unet(scheduler.add_noise(z, noise, t), t, encoder_hidden_states=text_encoder(ids[rows])[0]).sample
        return F.mse_loss(pred, scheduler.get_velocity(z, noise, t))

    state = train_loop(tag="unet", loss_fn=loss_fn, modules=named, params=params, ema=ema, opt=opt, gen=gen,
                       state=state, planned=steps, lr=lr, ema_decay=ema_decay, deadline=deadline, warmup=warmup,
                       checkpoint_every=checkpoint_every, ckpt_path=out_dir / "checkpoint.pt",
                       on_checkpoint=lambda: save_pipeline(make_pipe(), out_dir / "pipeline"), log=log)

    info = {
        "model": "scenes", "seed": seed, "size": size, **({"textures": textures} if textures != "fine" else {}),
        **({"background": background} if background != "gradient" else {}),
        "vae": vae_stats, "vae_scaling_factor": scaling,
        "train_set": n, "unet_steps": state.step, "unet_steps_scheduled": state.steps, "unet_steps_planned": steps,
        "stopped_early": state.stopped_early, "batch_size": batch_size, "lr": lr, "cfg_dropout": cfg_dropout,
        "warmup": warmup, **({"low_t_frac": low_t_frac, "low_t_max": low_t_max} if low_t_frac > 0 else {}),
        "init_from": None if init_from is None else Path(init_from).name,
        **({"init_fresh": fresh} if fresh else {}), "latent_channels": vae.config.latent_channels,
        "ema_decay": ema_decay, "final_loss_unet": round(state.run_loss, 5),
        "unet_seconds": round(state.elapsed, 1),
        "wall_seconds_this_invocation": round(time.time() - t_start, 1), "hardware": hardware("cpu"),
        "params": param_counts(unet=unet, text_encoder=text_encoder, vae=vae),
    }
    write_record(out_dir / "training.json", info, log)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: ``python -m training.scenes --out DIR``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--vae-steps", type=int, default=600)
    ap.add_argument("--train-set", type=int, default=16384)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--init-from", type=Path, default=None, help="start from this pipeline folder's weights")
    ap.add_argument("--vae", type=Path, default=None, help="a trained autoencoder folder to use (frozen)")
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--low-t-frac", type=float, default=0.0, help="share of each batch drawn at t < --low-t-max")
    ap.add_argument("--low-t-max", type=int, default=200)
    ap.add_argument("--textures", choices=sorted(TEXTURE_SCALES), default="fine", help="texture scale of the data")
    ap.add_argument("--background", choices=BACKGROUNDS, default="gradient", help="background shading of the data")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    args = ap.parse_args(argv)
    train(args.out, seed=args.seed, minutes=args.minutes, steps=args.steps, vae_steps=args.vae_steps,
          train_set=args.train_set, threads=args.threads, lr=args.lr, warmup=args.warmup, init_from=args.init_from,
          vae_dir=args.vae, low_t_frac=args.low_t_frac, low_t_max=args.low_t_max,
          textures=args.textures, background=args.background,
          log=lambda s: print(s, flush=True))


if __name__ == "__main__":
    main()
