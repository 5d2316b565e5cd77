"""Train the embedded ``shapes-flux`` model (FLUX architecture) on the ``scenes`` data, from scratch, on CPU.

The autoencoder is the first trained ``scenes`` one (4 latent channels; frozen, copied into the pipeline), and
so is the encoded training set: the 16,384 scenes a ``scenes`` training run renders and encodes once
(``latents.pt`` of that run's folder; ``--scenes-run``). Without such a folder the set (``--train-set`` scenes;
the first 16,384 are always the same) is rendered and encoded here with the autoencoder of ``--init-from``'s
folder, or of the shipped shapes-flux folder. The transformer and both text encoders are trained by rectified
flow (x_t = (1 − σ)·x₀ + σ·ε, target ε − x₀, σ logit-normal as in SD3), with an EMA of the weights, which is
what ships; ``--cfg-dropout`` of the captions train the learned null conditioning that classifier-free guidance
uses inside the transformer's one call per step
(:class:`cachesearch.embedded.shapes_flux._guided.GuidedFluxTransformer2DModel`).

Usage::

    python -m training.shapes_flux --out DIR [--scenes-run SCENES_DIR] [--minutes 50]
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

from cachesearch.embedded.scenes._components import WORDS
from cachesearch.embedded.scenes._data import DEFAULT_SIZE, TRAIN_STREAM
from cachesearch.embedded.shapes._components import text_encoder_config
from cachesearch.embedded.shapes_flux._components import scheduler_config, t5_config, transformer_config
from cachesearch.embedded.shapes_flux._guided import GuidedFluxTransformer2DModel
from cachesearch.embedded.shapes_flux._pipeline import TEXT_TOKENS, EmbeddedFluxPipeline

from ._loop import hardware, load_checkpoint, param_counts, start_run, train_loop, write_record
from ._tokenizer_files import build_tokenizer_files, load_tokenizer

__all__ = ["train"]

_SET_PHASE = 1  # the scenes trainer's phase id of its fixed training set (same rng stream, same scenes)


def _training_set(scenes_run: Path | None, vae, *, seed: int, n: int, size: int, log) -> tuple[torch.Tensor, list]:
    """Scaled latents [n, 4, 16, 16] and captions: from a scenes run's ``latents.pt`` or encoded here."""
    if scenes_run is not None and (scenes_run / "latents.pt").is_file():
        blob = torch.load(scenes_run / "latents.pt", weights_only=False)
        log(f"[set] {len(blob['captions'])} encoded scenes from {scenes_run / 'latents.pt'}")
        return blob["latents"], blob["captions"]
    from .scenes import _batch

    t0, rng, chunks, captions = time.time(), np.random.default_rng([seed, TRAIN_STREAM, _SET_PHASE]), [], []
    with torch.no_grad():
        for start in range(0, n, 256):
            x, caps = _batch(rng, min(256, n - start), size)
            chunks.append(vae.encode(x).latent_dist.mean * vae.config.scaling_factor)
            captions += caps
    log(f"[set] {n} scenes encoded in {time.time() - t0:.0f}s")
    return torch.cat(chunks), captions


def _load_vae(scenes_run: Path | None, init_from: Path | None = None):
    """The frozen autoencoder: a scenes run's ``vae.pt``, else ``init_from``'s, else the shipped shapes-flux
    folder's (the 4-channel scenes autoencoder with its fine-tuned decoder, the same weights as
    ``embedded:scenes``' own copy, which a retrained ``scenes`` model may replace)."""
    from diffusers import AutoencoderKL

    from cachesearch.embedded.scenes._components import vae_config
    from cachesearch.embedded.shapes_flux import pipeline_path

    if scenes_run is not None and (scenes_run / "vae.pt").is_file():
        blob = torch.load(scenes_run / "vae.pt", weights_only=False)
        vae = AutoencoderKL(**vae_config(DEFAULT_SIZE))
        vae.load_state_dict(blob["state_dict"])
        vae.register_to_config(scaling_factor=round(1.0 / blob["stats"]["latent_std"], 5))
    else:
        folder = (Path(init_from) if init_from is not None else pipeline_path()) / "vae"
        vae = AutoencoderKL.from_pretrained(str(folder), local_files_only=True)
    vae.register_to_config(shift_factor=0.0)  # FluxPipeline decodes latents / scaling + shift
    return vae.eval().requires_grad_(False)


def _init_from(folder: Path, transformer, text_encoder, text_encoder_2, tokenizer, tokenizer_2, log) -> None:
    """Start from an earlier run's pipeline folder (its EMA weights); a folder without null conditioning (an
    unguided run) gets that pipeline's encoding of the empty caption as its start."""
    from safetensors.torch import load_file

    (path,) = (folder / "transformer").glob("*.safetensors")
    missing, unexpected = transformer.load_state_dict(load_file(path), strict=False)
    if unexpected or [k for k in missing if k not in ("null_text", "null_pooled")]:
        raise ValueError(f"{path}: does not fit this architecture (missing {missing}, unexpected {unexpected})")
    for module, sub in ((text_encoder, "text_encoder"), (text_encoder_2, "text_encoder_2")):
        module.load_state_dict(type(module).from_pretrained(str(folder / sub), local_files_only=True).state_dict())
    if not missing:
        log(f"[flux] initialised from {folder} (with its null conditioning)")
        return
    with torch.no_grad():
        empty = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt")
        empty_2 = tokenizer_2([""], padding="max_length", max_length=TEXT_TOKENS, return_tensors="pt")
        transformer.null_pooled.copy_(text_encoder(empty.input_ids).pooler_output[0])
        transformer.null_text.copy_(text_encoder_2(empty_2.input_ids)[0][0])
    log(f"[flux] initialised from {folder}")


def _save_pipeline(pipe, folder: Path) -> None:
    """``save_pretrained``, then name the folder's class ``FluxPipeline`` so that diffusers alone loads it
    (``FluxPipeline.from_pretrained(folder)`` gives FLUX's own transformer class: the same blocks and weights
    without the guided wrapper, i.e. the model at ``guidance_scale=1``; pass ``max_sequence_length=16``)."""
    pipe.save_pretrained(folder, safe_serialization=True)
    index = folder / "model_index.json"
    meta = json.loads(index.read_text(encoding="utf-8"))
    meta["_class_name"] = "FluxPipeline"
    meta["transformer"] = ["diffusers", "FluxTransformer2DModel"]  # diffusers alone: FLUX's class, unguided
    index.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def train(
    out_dir: Path,
    *,
    scenes_run: Path | None = None,
    seed: int = 0,
    minutes: float | None = None,
    steps: int = 3000,
    train_set: int = 16384,
    batch_size: int = 64,
    lr: float = 5e-4,
    cfg_dropout: float = 0.1,
    init_from: Path | None = None,
    warmup: int = 200,
    ema_decay: float = 0.995,
    checkpoint_every: int = 250,
    threads: int | None = 1,
    log: Callable[[str], None] = print,
) -> None:
    """Train transformer + text encoders; write ``out_dir/pipeline`` (an ``EmbeddedFluxPipeline``) and
    ``training.json``. ``minutes`` caps the run (the steps run are recorded; re-running with them and no budget
    reproduces it on the same hardware/threads). Checkpoints into ``out_dir/checkpoint.pt`` and resumes."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    out_dir, t_start, deadline = start_run(out_dir, threads=threads, minutes=minutes)
    tok_dirs = [out_dir / "pipeline" / "tokenizer", out_dir / "pipeline" / "tokenizer_2"]
    for d in tok_dirs:
        build_tokenizer_files(d, WORDS)
    tokenizer, tokenizer_2 = (load_tokenizer(d, WORDS) for d in tok_dirs)
    vae = _load_vae(scenes_run, init_from)
    latents, captions = _training_set(scenes_run, vae, seed=seed, n=train_set, size=DEFAULT_SIZE, log=log)
    uniq = sorted(set(captions))
    ids = tokenizer(uniq, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    ids_2 = tokenizer_2(uniq, padding="max_length", max_length=TEXT_TOKENS, truncation=True,
                        return_tensors="pt").input_ids
    row_of = {t: i for i, t in enumerate(uniq)}
    rows_all = torch.tensor([row_of[c] for c in captions])

    torch.manual_seed(seed + 1)
    te_cfg = CLIPTextConfig(**text_encoder_config(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id))
    t5_cfg = T5Config(**t5_config(len(tokenizer_2), tokenizer_2.pad_token_id, tokenizer_2.eos_token_id))
    text_encoder, text_encoder_2 = CLIPTextModel(te_cfg), T5EncoderModel(t5_cfg)
    transformer = GuidedFluxTransformer2DModel(**transformer_config(te_cfg.hidden_size))
    if init_from is not None:
        _init_from(Path(init_from), transformer, text_encoder, text_encoder_2, tokenizer, tokenizer_2, log)
    scheduler = FlowMatchEulerDiscreteScheduler(**scheduler_config())
    modules = (transformer, text_encoder, text_encoder_2)
    params = [p for m in modules for p in m.parameters()]
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed + 2)
    named = dict(zip(("transformer", "text_encoder", "text_encoder_2"), modules, strict=True))
    state = load_checkpoint(out_dir / "checkpoint.pt", named, ema, opt, gen)
    if state.step:
        log(f"[flux] resumed from step {state.step}")

    n, c, h, w = latents.shape
    img_ids = FluxPipeline._prepare_latent_image_ids(batch_size, h // 2, w // 2, "cpu", torch.float32)
    txt_ids = torch.zeros(TEXT_TOKENS, 3)

    def make_pipe() -> EmbeddedFluxPipeline:
        copies = [type(m).from_config(m.config) if isinstance(m, GuidedFluxTransformer2DModel) else type(m)(m.config)
                  for m in modules]
        with torch.no_grad():
            for s, e in zip([p for m in copies for p in m.parameters()], ema, strict=True):
                s.copy_(e)
        tr, te, te2 = (m.eval() for m in copies)
        return EmbeddedFluxPipeline(scheduler=scheduler, vae=vae, text_encoder=te, tokenizer=tokenizer,
                                    text_encoder_2=te2, tokenizer_2=tokenizer_2, transformer=tr)

    def loss_fn() -> torch.Tensor:
        idx = torch.randint(0, n, (batch_size,), generator=gen)
        x0 = FluxPipeline._pack_latents(latents[idx], batch_size, c, h, w)
        noise = torch.randn(x0.shape, generator=gen)
        sigma = torch.sigmoid(torch.randn(batch_size, generator=gen))
        xt = (1 - sigma[:, None, None]) * x0 + sigma[:, None, None] * noise
        rows = rows_all[idx]
        drop = torch.rand(batch_size, generator=gen) < cfg_dropout
        tokens, pooled = transformer.with_null(text_encoder_2(ids_2[rows])[0], text_encoder(ids[rows]).pooler_output,
                                               drop)
        pred = transformer(hidden_states=xt, timestep=sigma, pooled_projections=pooled, encoder_hidden_states=tokens,
                           txt_ids=txt_ids, img_ids=img_ids, return_dict=False)[0]
        return F.mse_loss(pred, noise - x0)

    state = train_loop(tag="flux", loss_fn=loss_fn, modules=named, params=params, ema=ema, opt=opt, gen=gen,
                       state=state, planned=steps, lr=lr, ema_decay=ema_decay, deadline=deadline, warmup=warmup,
                       checkpoint_every=checkpoint_every, ckpt_path=out_dir / "checkpoint.pt",
                       on_checkpoint=lambda: _save_pipeline(make_pipe(), out_dir / "pipeline"), log=log)

    info = {
        "model": "shapes-flux", "seed": seed, "size": DEFAULT_SIZE, "data": "scenes", "train_set": n,
        "vae": "scenes (frozen)", "vae_scaling_factor": vae.config.scaling_factor,
        "steps": state.step, "steps_scheduled": state.steps, "steps_planned": steps,
        "stopped_early": state.stopped_early,
        "batch_size": batch_size, "lr": lr, "warmup": warmup, "cfg_dropout": cfg_dropout,
        "init_from": None if init_from is None else Path(init_from).name, "ema_decay": ema_decay,
        "objective": "rectified flow, logit-normal sigma",
        "final_loss": round(state.run_loss, 5), "seconds": round(state.elapsed, 1),
        "wall_seconds_this_invocation": round(time.time() - t_start, 1), "hardware": hardware("cpu"),
        "params": param_counts(transformer=transformer, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                               vae=vae),
    }
    write_record(out_dir / "training.json", info, log)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: ``python -m training.shapes_flux --out DIR``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--scenes-run", type=Path, default=None, help="a scenes training run folder (vae.pt, latents.pt)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--train-set", type=int, default=16384)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--cfg-dropout", type=float, default=0.1)
    ap.add_argument("--init-from", type=Path, default=None, help="start from this pipeline folder's weights")
    ap.add_argument("--ema-decay", type=float, default=0.995, help="EMA decay of the shipped weights (0 < d < 1)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    args = ap.parse_args(argv)
    if not 0.0 < args.ema_decay < 1.0:
        ap.error(f"--ema-decay must be in (0, 1), got {args.ema_decay}")
    train(args.out, scenes_run=args.scenes_run, seed=args.seed, minutes=args.minutes, steps=args.steps,
          train_set=args.train_set, threads=args.threads, lr=args.lr, warmup=args.warmup,
          cfg_dropout=args.cfg_dropout, init_from=args.init_from, ema_decay=args.ema_decay,
          log=lambda s: print(s, flush=True))


if __name__ == "__main__":
    main()
