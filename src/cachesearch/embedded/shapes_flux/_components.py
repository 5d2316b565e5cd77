"""Architecture of the embedded ``shapes-flux`` pipeline: component configs (training and loading).

A FLUX.1-architecture transformer at toy size (2 double-stream + 4 single-stream blocks, width 128, 4 heads,
3-axis RoPE), a CLIP text encoder for the pooled vector and a small T5 encoder for the token states (both
with the scenes word-level tokenizer), the ``scenes`` autoencoder (64 px <-> 16×16×4, packed 2×2 into 64
tokens of 16 channels) and flow-matching Euler with a fixed shift.
"""

from __future__ import annotations

__all__ = ["T5_DIM", "scheduler_config", "t5_config", "transformer_config"]

T5_DIM = 64
"""Width of the T5 encoder's token states (the transformer's ``joint_attention_dim``)."""


def transformer_config(pooled_dim: int) -> dict:
    """Config kwargs of the ``FluxTransformer2DModel`` (≈3.2 M parameters, no guidance embedding)."""
    return {
        "patch_size": 1,
        "in_channels": 16,
        "num_layers": 2,
        "num_single_layers": 4,
        "attention_head_dim": 32,
        "num_attention_heads": 4,
        "joint_attention_dim": T5_DIM,
        "pooled_projection_dim": pooled_dim,
        "guidance_embeds": False,
        "axes_dims_rope": (8, 12, 12),
    }


def t5_config(vocab_size: int, pad_id: int, eos_id: int) -> dict:
    """Config kwargs of the small ``T5EncoderModel`` (2 layers, width :data:`T5_DIM`)."""
    return {
        "vocab_size": vocab_size,
        "d_model": T5_DIM,
        "d_kv": 16,
        "d_ff": 256,
        "num_layers": 2,
        "num_heads": 4,
        "relative_attention_num_buckets": 16,
        "feed_forward_proj": "gated-gelu",
        "dropout_rate": 0.0,
        "pad_token_id": pad_id,
        "eos_token_id": eos_id,
    }


SAMPLING_SHIFT = 4.0
"""Sampling-time shift of the flow-matching sigmas (training draws sigma from a logit-normal, independent of it).
Chosen on evaluation set 1, not the gate's set 0: both colours right 92.5 / 93.5 / 94 / 94.5 / 94.5 / 94.5 % at
shift 1 / 2 / 3 / 4 / 6 / 9 (phase-4 weights, 28 steps, guidance 3.5); the smallest shift at the plateau."""


def scheduler_config() -> dict:
    """``FlowMatchEulerDiscreteScheduler`` kwargs: :data:`SAMPLING_SHIFT`, no resolution-dependent shifting."""
    return {"num_train_timesteps": 1000, "shift": SAMPLING_SHIFT, "use_dynamic_shifting": False}
