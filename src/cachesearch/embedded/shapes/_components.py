"""Architecture of the embedded ``shapes`` pipeline: its vocabulary and component configs.

The shipped ``pipeline/`` folder holds these configs already, so loading it needs nothing but diffusers; the
trainers (the repository's ``training/``) build fresh components from them.
"""

from __future__ import annotations

from ._data import COLORS, SHAPES

MAX_TOKENS = 16
"""Tokenizer ``model_max_length`` (a caption is 9 tokens with BOS/EOS)."""

WORDS: tuple[str, ...] = ("a", "on", "background", *SHAPES, *COLORS)
"""Every word a caption can contain; each is one token."""


def text_encoder_config(vocab_size: int, bos_id: int, eos_id: int) -> dict:
    """Config kwargs of the small ``CLIPTextModel`` (2 layers, width 64)."""
    return {
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": MAX_TOKENS,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "pad_token_id": eos_id,
        "projection_dim": 64,
    }


def vae_config(size: int) -> dict:
    """Config kwargs of the tiny ``AutoencoderKL``: one 2x downsample, (size, size, 3) -> (size/2, size/2, 4)."""
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D", "DownEncoderBlock2D"),
        "up_block_types": ("UpDecoderBlock2D", "UpDecoderBlock2D"),
        "block_out_channels": (32, 64),
        "layers_per_block": 1,
        "latent_channels": 4,
        "norm_num_groups": 16,
        "sample_size": size,
    }


def unet_config(latent_size: int, cross_attention_dim: int = 64, *, latent_channels: int = 4) -> dict:
    """Config kwargs of the ``UNet2DConditionModel``: 3 down/up stages + cross-attention mid block.

    ``layers_per_block=2`` (3 resnets per up block, as DeepCache's branch numbering assumes); cross-attention
    in the two deeper stages and the mid block, plain resnets at full latent resolution (cheapest on CPU).
    The caption also enters every resnet through the time embedding (``addition_embed_type="text"``: attention
    pooling of the text states): colors are global properties, and cross-attention alone learned them too slowly.
    """
    return {
        "sample_size": latent_size,
        "in_channels": latent_channels,
        "out_channels": latent_channels,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        "block_out_channels": (32, 64, 96),
        "layers_per_block": 2,
        "cross_attention_dim": cross_attention_dim,
        "attention_head_dim": 4,
        "norm_num_groups": 16,
        "addition_embed_type": "text",
        "addition_embed_type_num_heads": 4,
    }


def scheduler_config() -> dict:
    """DDIM config: DDPM's linear betas rescaled to zero terminal SNR, v-prediction, trailing timesteps.

    Why: with epsilon prediction and a non-zero terminal SNR, a flat image's global colors survive in the noisy
    latent almost to the end, so the model learned to read colors off the noise instead of the caption (samples
    depended on the seed, not the prompt). At zero terminal SNR the first step sees pure noise and v-prediction
    makes the model predict the (caption-determined) image there (Lin et al. 2024, "Common Diffusion Noise
    Schedules and Sample Steps are Flawed").
    """
    return {
        "num_train_timesteps": 1000,
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "beta_schedule": "linear",
        "rescale_betas_zero_snr": True,
        "clip_sample": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,  # unused by "trailing" spacing; 1 avoids a diffusers deprecation warning
        "prediction_type": "v_prediction",
        "timestep_spacing": "trailing",
    }
