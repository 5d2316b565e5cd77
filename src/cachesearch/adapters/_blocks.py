"""I/O contracts of diffusers' shared building blocks, registered once for every family that caches them.

``Attention`` is a UNet's ``attn1``/``attn2``, SD3's joint ``attn`` (which returns ``(hidden_states,
encoder_hidden_states)``) and PixArt's ``attn1``/``attn2``; ``FeedForward`` is every ``ff``/``ff_context``;
``Linear`` is FLUX single-stream blocks' ``proj_mlp``/``proj_out``. All are ``[B, L, C]`` token sequences.
"""

from __future__ import annotations

from .base import BlockIO, register_block_io

__all__ = ["TOKENS"]

TOKENS = BlockIO(channel_dim=-1)
"""A block that takes and returns one ``[B, L, C]`` token tensor."""

# Joint attention returns (hidden_states, encoder_hidden_states); cross- and self-attention a bare tensor.
register_block_io("Attention", BlockIO(return_hidden_states_index=0, return_encoder_hidden_states_index=1,
                                       encoder_hidden_states_position=1,
                                       channel_dim=-1))
register_block_io("FeedForward", TOKENS)
register_block_io("Linear", BlockIO(hidden_states_argument="input", channel_dim=-1))
# diffusers' newer attention classes (WanAttention, FluxAttention, QwenImage's, ...) derive from
# AttentionModuleMixin and keep Attention's signature (hidden_states, encoder_hidden_states, ...) and outputs.
register_block_io("AttentionModuleMixin", BlockIO(return_hidden_states_index=0, return_encoder_hidden_states_index=1,
                                                  encoder_hidden_states_position=1, channel_dim=-1))
register_block_io("MochiAttention", BlockIO(return_hidden_states_index=0, return_encoder_hidden_states_index=1,
                                            encoder_hidden_states_position=1, channel_dim=-1))
register_block_io("LuminaFeedForward", BlockIO(hidden_states_argument="x", channel_dim=-1))
