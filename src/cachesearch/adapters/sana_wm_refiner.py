"""SANA-WM's stage-2 refiner (``SanaWMLTX2RefinerTransformer3DModel``, an LTX-2 DiT with a sliding-window KV cache):
what the generic transformer adapter cannot read from diffusers' metadata. Its blocks are ``transformer_blocks.i``
(found by name); this file adds:

* **Calls beside the steps.** ``SanaWMLTX2Refiner`` (``pipelines/sana_wm/refiner.py``) refines the clip chunk by
  chunk (``block_size`` latent frames). After its first ``scheduler.set_timesteps`` it calls the transformer once
  with ``kv_cache_mode="capture_pre_rope"`` (every block records the attention sink's keys and values); per chunk it
  calls ``set_timesteps`` again (a new sampling loop of the distilled sigmas), runs one ``kv_cache_mode="inject"``
  call per step, then one ``"inject_and_capture_post_rope"`` call on the refined chunk (every block records the
  chunk's keys and values for the next window). The capture calls are no sampler steps: they run uncached.
* **Components.** The blocks keep LTX-2's audio submodules so that checkpoints load, but run the video stream
  alone: its components are ``attn1``, ``attn2`` and ``ff``. Blocks take and return the ``[B, L, C]`` tokens.
* **Example inputs** of one step call: an active chunk of 3 latent frames at 704 × 1280 pixels (22 × 40 latents of
  LTX-2's 32× autoencoder), 1024 Gemma tokens, and the window the pipeline keeps by default (``kv_max_frames=11``):
  a one-frame attention sink and ten frames of history in the KV cache (data tensors).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._blocks import TOKENS
from ._calls import CallRoles, register_call_roles
from ._dit import Component, register_components
from ._examples import Make, Sizes, example
from .base import register_block_io

__all__ = ["ROLES"]

ROLES = CallRoles(
    argument="kv_cache_mode", side=("capture_pre_rope", "inject_and_capture_post_rope"),
    why="KV-cache capture calls: the attention sink once, each refined chunk after its steps",
)
register_call_roles("SanaWMLTX2RefinerTransformer3DModel", ROLES)
register_block_io("SanaWMLTX2RefinerTransformerBlock", TOKENS)
register_components("SanaWMLTX2RefinerTransformerBlock", (
    Component("attn1", attention=True), Component("attn2", attention=True), Component("ff")))

_SINK_FRAMES = 1
_HISTORY_FRAMES = 10  # kv_max_frames (11) - sink


def _rope(m: Make, c: Mapping[str, Any], s: Sizes, frames: int) -> Any:
    """The video RoPE ``(cos, sin)`` of ``frames`` latent frames from frame 0, built as the model builds its own
    (the pipeline's absolute frame positions only shift the phases)."""
    from diffusers.models.transformers.transformer_sana_wm_refiner import SanaWMLTX2AudioVideoRotaryPosEmbed

    rope = SanaWMLTX2AudioVideoRotaryPosEmbed(
        dim=c["num_attention_heads"] * c["attention_head_dim"], patch_size=c["patch_size"],
        patch_size_t=c["patch_size_t"], base_num_frames=c["pos_embed_max_pos"], base_height=c["base_height"],
        base_width=c["base_width"], scale_factors=tuple(c["vae_scale_factors"]), theta=c["rope_theta"],
        causal_offset=c["causal_offset"], modality="video", double_precision=c["rope_double_precision"],
        rope_type=c["rope_type"], num_attention_heads=c["num_attention_heads"])
    coords = rope.prepare_video_coords(s.batch, frames, s.height, s.width, device=m.device, fps=24.0)
    return tuple(t.to(m.dtype) for t in rope(coords, device=m.device))


@example("SanaWMLTX2RefinerTransformer3DModel", height=22, width=40, frames=3, text=1024, video=True)
def _sana_wm_refiner(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """One ``inject`` step of a chunk of ``frames`` latent frames: packed tokens, a per-token timestep (already
    scaled by ``timestep_scale_multiplier``), the caller-built video RoPE, and the KV cache of a full window."""
    from diffusers.models.transformers.transformer_sana_wm_refiner import SanaWMRefinerKVCache

    per_frame = (s.height // c["patch_size"]) * (s.width // c["patch_size"]) // c["patch_size_t"]
    tokens = s.frames * per_frame
    inner = c["num_attention_heads"] * c["attention_head_dim"]
    cache = SanaWMRefinerKVCache(c["num_layers"])
    for layer in cache.layer_caches:
        sink, history = _SINK_FRAMES * per_frame, _HISTORY_FRAMES * per_frame
        layer.store_sink(m.data(s.batch, sink, inner), m.data(s.batch, sink, inner))
        layer.store_history(m.data(s.batch, history, inner), m.data(s.batch, history, inner))
    cache.sink_pe = _rope(m, c, s, _SINK_FRAMES)
    return {
        "hidden_states": m.data(s.batch, tokens, c["in_channels"]),
        "encoder_hidden_states": m.data(s.batch, s.text, c["caption_channels"]),
        "timestep": m.full(500.0, s.batch, tokens),
        "video_rotary_emb": _rope(m, c, s, s.frames),
        "encoder_attention_mask": m.ones(s.batch, s.text),
        "kv_cache": cache, "kv_cache_mode": "inject",
    }
