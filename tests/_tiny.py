"""Tiny, seeded Stable-Diffusion-style pipelines for tests and the tiny benchmarks (CPU, well under a second
per 2-step generation). Test-only: not part of the package.

Modelled on diffusers' own test fixtures (``get_dummy_components()`` in ``tests/pipelines/stable_diffusion``):
real component classes at toy sizes with default (random) initialisation, so hooks, schedules and adapters
are exercised on the same module structure as Stable Diffusion 1.x (``down_blocks.i``, ``mid_block``,
``up_blocks.i`` with ``resnets``/``attentions``/``downsamplers``/``upsamplers``). Nothing is downloaded: the
tokenizer comes from :func:`cachesearch.models._tokenizer.char_clip_tokenizer`.

``layers_per_block=2`` as in SD 1.x, so every up block has three layers (DeepCache's branch numbering
assumes that).
"""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from cachesearch.models._tokenizer import char_clip_tokenizer

__all__ = ["TINY_SCHEDULERS", "tiny_sd_pipeline", "tiny_sdxl_pipeline", "tiny_unet_config"]

_SCHEDULER_KW = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
}
TINY_SCHEDULERS: tuple[str, ...] = ("ddim", "euler", "pndm")
"""Scheduler names accepted by :func:`tiny_sd_pipeline`."""


def tiny_unet_config(blocks: int = 2) -> dict[str, object]:
    """Config of the tiny UNet with ``blocks`` stages (2, 3 or 4).

    Stage 0 is a plain ``DownBlock2D``/``UpBlock2D`` pair (like SD 1.x's deepest stage but at the top, as in
    diffusers' test UNet); every other stage has cross-attention. Channels are 32 except the last stage (64).
    """
    if blocks not in (2, 3, 4):
        raise ValueError(f"blocks must be 2, 3 or 4, got {blocks!r}")
    down = ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (blocks - 1)
    return {
        "sample_size": 32,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": (32,) * (blocks - 1) + (64,),
        "layers_per_block": 2,
        "down_block_types": down,
        "up_block_types": tuple(name.replace("Down", "Up") for name in reversed(down)),
        "cross_attention_dim": 32,
        "attention_head_dim": 8,
        "norm_num_groups": 8,
    }


def _scheduler(name: str) -> DDIMScheduler | EulerDiscreteScheduler | PNDMScheduler:
    if name == "ddim":
        return DDIMScheduler(**_SCHEDULER_KW, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    if name == "euler":
        return EulerDiscreteScheduler(**_SCHEDULER_KW, steps_offset=1)
    if name == "pndm":
        return PNDMScheduler(**_SCHEDULER_KW, skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1)
    raise ValueError(f"unknown scheduler {name!r}; expected one of {', '.join(TINY_SCHEDULERS)}")


def _tiny_vae() -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
    )


def _clip_config(**extra: object) -> CLIPTextConfig:
    return CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=2,
        pad_token_id=1,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-5,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=77,
        vocab_size=1000,
        **extra,
    )


def tiny_sd_pipeline(seed: int = 0, scheduler: str = "ddim", *, blocks: int = 2) -> StableDiffusionPipeline:
    """A tiny random-weight :class:`~diffusers.StableDiffusionPipeline` on CPU in float32.

    Args:
        seed: Seeds the weights; the same seed gives bit-identical weights on every call. The caller's global
            RNG state is left untouched.
        scheduler: ``"ddim"`` (default), ``"euler"`` or ``"pndm"`` (SD-1.x beta schedule).
        blocks: Number of UNet stages (2, 3 or 4), see :func:`tiny_unet_config`.

    The VAE has two stages (scale factor 2): the default image is 64 px (32x32 latents); ``height=width=32``
    also works for all ``blocks`` values (16x16 latents). ``safety_checker`` is ``None``, the progress bar is
    disabled, and ``pipe._cachesearch_random_weights`` is ``True``.
    """
    unet_config = tiny_unet_config(blocks)
    sched = _scheduler(scheduler)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**unet_config)
        torch.manual_seed(seed)
        vae = _tiny_vae()
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(_clip_config())
    pipe = StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=char_clip_tokenizer(),
        unet=unet.eval(),
        scheduler=sched,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    pipe._cachesearch_random_weights = True
    return pipe


def tiny_sdxl_pipeline(seed: int = 0, scheduler: str = "euler") -> StableDiffusionXLPipeline:
    """A tiny random-weight :class:`~diffusers.StableDiffusionXLPipeline` on CPU in float32.

    Like diffusers' SDXL ``get_dummy_components()``: the UNet has SDXL's stage layout (``DownBlock2D`` then
    two cross-attention stages, :func:`tiny_unet_config` with 3 stages) and ``addition_embed_type="text_time"``
    (time ids + the pooled text embedding feed ``added_cond_kwargs``); two text encoders, a ``CLIPTextModel``
    and a ``CLIPTextModelWithProjection`` (hidden size 32 each, so cross-attention sees 64 features); the
    second tokenizer pads with ``"!"`` as SDXL's OpenCLIP tokenizer does. Same seeding and VAE as
    :func:`tiny_sd_pipeline`; ``height=width=32`` gives 16x16 latents. ``scheduler`` defaults to Euler
    (SDXL's default).
    """
    addition_time_embed_dim, projection_dim = 8, 32
    unet_config = {
        **tiny_unet_config(3),
        "cross_attention_dim": 64,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": addition_time_embed_dim,
        # 6 time ids (original size, crop, target size) + the pooled projection of text encoder 2
        "projection_class_embeddings_input_dim": 6 * addition_time_embed_dim + projection_dim,
        "use_linear_projection": True,
    }
    sched = _scheduler(scheduler)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**unet_config)
        torch.manual_seed(seed)
        vae = _tiny_vae()
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(_clip_config(projection_dim=projection_dim))
        torch.manual_seed(seed + 1)
        text_encoder_2 = CLIPTextModelWithProjection(_clip_config(projection_dim=projection_dim))
    pipe = StableDiffusionXLPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        text_encoder_2=text_encoder_2.eval(),
        tokenizer=char_clip_tokenizer(),
        tokenizer_2=char_clip_tokenizer(pad_token="!"),
        unet=unet.eval(),
        scheduler=sched,
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    pipe._cachesearch_random_weights = True
    return pipe
