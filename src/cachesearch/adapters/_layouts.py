"""Output layouts and components of diffusers' transformer block classes that diffusers'
``TransformerBlockRegistry`` does not register (or registers wrongly), read from each block's ``forward`` and
checked against what the block returns by the coverage tests (``tests/adapters/test_coverage.py``).

Two layouts: a block returns the hidden-state tensor (``TOKENS``), or a pair of the image and text streams in
one of two orders (``HIDDEN_FIRST``: ``(hidden_states, encoder_hidden_states)``; ``TEXT_FIRST``: FLUX's
``(encoder_hidden_states, hidden_states)``) — cache-dit's ``ForwardPattern`` 3, 0 and 1.
"""

from __future__ import annotations

from ._blocks import TOKENS
from ._dit import Component, register_block_lists, register_components
from .base import BlockIO, register_block_io

__all__ = ["HIDDEN_FIRST", "TEXT_FIRST"]

HIDDEN_FIRST = BlockIO(return_hidden_states_index=0, return_encoder_hidden_states_index=1,
                       encoder_hidden_states_position=1, channel_dim=-1)
"""``(hidden_states, encoder_hidden_states)`` from ``forward(hidden_states, encoder_hidden_states, ...)``."""
TEXT_FIRST = BlockIO(return_hidden_states_index=1, return_encoder_hidden_states_index=0,
                     encoder_hidden_states_position=1, channel_dim=-1)
"""``(encoder_hidden_states, hidden_states)`` from ``forward(hidden_states, encoder_hidden_states, ...)``."""

_LAYOUTS = {
    TEXT_FIRST: (
        "AuraFlowJointTransformerBlock", "BriaFiboTransformerBlock", "BriaSingleTransformerBlock",
        "ChromaTransformerBlock", "LongCatImageTransformerBlock", "LongCatImageSingleTransformerBlock",
        "OvisImageTransformerBlock", "OvisImageSingleTransformerBlock", "Flux3SingleTransformerBlock",
        # diffusers registers BriaTransformerBlock as returning the hidden state alone at index 0; it returns
        # (encoder_hidden_states, hidden_states) like FLUX's blocks it copies (tests/adapters/test_coverage.py)
        "BriaTransformerBlock",
    ),
    HIDDEN_FIRST: (
        "CogView3PlusTransformerBlock", "GlmImageTransformerBlock", "JoyImageTransformerBlock",
        "JoyImageEditPlusTransformerBlock", "ConsisIDBlock", "EasyAnimateTransformerBlock",
        "HunyuanVideo15TransformerBlock",
        "HiDreamBlock",  # double-stream blocks return both streams, single-stream ones the hidden state
    ),
    TOKENS: (
        "AuraFlowSingleTransformerBlock", "BriaFiboSingleTransformerBlock", "ChromaSingleTransformerBlock",
        "HunyuanDiTBlock", "Lumina2TransformerBlock", "LuminaNextDiTBlock", "NucleusMoEImageTransformerBlock",
        "OmniGenBlock", "PRXBlock", "SanaTransformerBlock", "Flux3ModeTransformerBlock", "QwenImage21TransformerBlock",
        "Ideogram4TransformerBlock", "Krea2TransformerBlock", "SkyReelsV2TransformerBlock", "AnyFlowTransformerBlock",
        "AllegroTransformerBlock", "CosmosTransformerBlock", "HeliosTransformerBlock", "SanaVideoTransformerBlock",
        "Kandinsky6SRTransformerBlock", "MiniMaxH3TransformerBlock",
    ),
}
for _io, _names in _LAYOUTS.items():
    for _name in _names:
        register_block_io(_name, _io, overrides_diffusers=_name == "BriaTransformerBlock")

# LTX-2's blocks carry the video and the audio stream: (hidden_states, audio_hidden_states) from
# forward(hidden_states, audio_hidden_states, ...); the audio stream takes the text stream's slot.
register_block_io("LTX2VideoTransformerBlock", BlockIO(
    return_hidden_states_index=0, return_encoder_hidden_states_index=1,
    encoder_hidden_states_argument="audio_hidden_states", encoder_hidden_states_position=1, channel_dim=-1))
# Kandinsky 6's fused blocks: forward(vis, aud, ...) -> (vis, aud); the audio stream (None for video alone) takes
# the text stream's slot. Without audio only the video sub-block runs: its modules are the components.
register_block_io("Kandinsky6FusedTransformerDecoderBlock", BlockIO(
    hidden_states_argument="vis", return_hidden_states_index=0, return_encoder_hidden_states_index=1,
    encoder_hidden_states_argument="aud", encoder_hidden_states_position=1, channel_dim=-1))
register_components("Kandinsky6FusedTransformerDecoderBlock", (
    Component("video_dec_block.self_attention", attention=True),
    Component("video_dec_block.cross_attention", attention=True), Component("video_dec_block.feed_forward")))
register_block_io("BriaFibo2TransformerBlock", BlockIO(hidden_states_argument="x", channel_dim=-1))
register_block_io("SanaVideoMSCamCtrlBlock", BlockIO(hidden_states_argument="x", channel_dim=-1))  # SANA-WM
register_block_io("MultiHeadCrossAttention", BlockIO(hidden_states_argument="x", encoder_hidden_states_argument="cond",
                                                     encoder_hidden_states_position=1, channel_dim=-1))
# Cosmos 3's attention takes and returns (und_seq, gen_seq): the understanding (text) stream first, as its layers.
register_block_io("Cosmos3PackedMoTAttention", BlockIO(
    hidden_states_argument="gen_seq", hidden_states_position=1, return_hidden_states_index=1,
    encoder_hidden_states_argument="und_seq", encoder_hidden_states_position=0, return_encoder_hidden_states_index=0,
    channel_dim=-1))

# FLUX.3 runs per-mode blocks (the text alone, the image alone) before its joint single-stream blocks; diffusers
# names only the last list.
register_block_lists("Flux3Transformer2DModel", ("txt_mode_blocks", "mode_blocks.image", "single_transformer_blocks"))

# JoyImage's blocks define their MLPs before the attention that runs first.
for _name in ("JoyImageTransformerBlock", "JoyImageEditPlusTransformerBlock"):
    register_components(_name, (Component("attn", attention=True), Component("img_mlp"), Component("txt_mlp")))

# HiDream's attention takes (norm_hidden_states, hidden_states_masks, norm_encoder_hidden_states, ...).
register_block_io("HiDreamAttention", BlockIO(
    hidden_states_argument="norm_hidden_states", return_hidden_states_index=0, return_encoder_hidden_states_index=1,
    encoder_hidden_states_argument="norm_encoder_hidden_states", encoder_hidden_states_position=2, channel_dim=-1))

# Lumina-Next's attentions return heads unflattened ([B, L, heads, head_dim]; the block flattens and projects the
# gated sum of both): no residual reuse on them.
register_components("LuminaNextDiTBlock", (
    Component("attn1", attention=True, residual_ok=False), Component("attn2", attention=True, residual_ok=False),
    Component("feed_forward")))

# CogView4's and GLM-Image's blocks run their one `ff` twice per call (image stream, then text stream): a cached
# output could stand for one call only, so it is not a component.
for _name in ("CogView4TransformerBlock", "GlmImageTransformerBlock"):
    register_components(_name, (Component("attn1", attention=True),))

# ERNIE-Image's blocks take sequence-first tensors ([L, B, C]): no layout is registered, so residual reuse and
# per-branch (cond/uncond) masks, which split the batch on dimension 0, are refused on them (their components take
# [B, L, C] and have the attention layout).
