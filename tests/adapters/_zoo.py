"""Tiny random configurations of diffusers' transformer classes, for the adapter coverage tests. Test-only.

Each configuration is the one diffusers' own model test of that class builds (``get_init_dict`` /
``prepare_init_args_and_inputs_for_common`` in ``tests/models/transformers/test_models_transformer_*.py``), with
at most two layers per block list; the sizes are that test's ``get_dummy_inputs`` sizes (latent frames, height,
width, text tokens). The inputs themselves come from the adapter (:func:`cachesearch.adapters.example_for`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import diffusers
import torch
from diffusers.hooks.hooks import CacheContext, _set_cache_context

from cachesearch.adapters import adapter_for, example_for

__all__ = ["TINY", "Tiny", "build", "inputs_of", "sample"]


@dataclass(frozen=True)
class Tiny:
    """One tiny configuration and its test sizes."""

    config: dict[str, Any]
    height: int = 16
    width: int = 16
    frames: int = 1
    text: int = 8
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


TINY: dict[str, Tiny] = {
    # image
    "FluxTransformer2DModel": Tiny(dict(
        patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(4, 4, 8)), height=8, width=8),
    "SD3Transformer2DModel": Tiny(dict(
        sample_size=32, patch_size=1, in_channels=4, num_layers=2, attention_head_dim=8, num_attention_heads=4,
        caption_projection_dim=32, joint_attention_dim=32, pooled_projection_dim=64, out_channels=4,
        dual_attention_layers=(0,), qk_norm="rms_norm"), height=8, width=8),
    "PixArtTransformer2DModel": Tiny(dict(
        sample_size=8, num_layers=2, patch_size=2, attention_head_dim=8, num_attention_heads=3, caption_channels=32,
        in_channels=4, cross_attention_dim=24, out_channels=8, attention_bias=True, activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000, norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6),
        height=8, width=8),
    "QwenImageTransformer2DModel": Tiny(dict(
        patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=4,
        joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(8, 4, 4)), height=8, width=8),
    "BriaTransformer2DModel": Tiny(dict(
        patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=32, pooled_projection_dim=None, axes_dims_rope=[0, 4, 4]), height=8, width=8),
    "BriaFiboTransformer2DModel": Tiny(dict(
        patch_size=1, in_channels=48, num_layers=1, num_single_layers=1, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=64, text_encoder_dim=32, pooled_projection_dim=None, axes_dims_rope=[0, 4, 4]),
        height=8, width=8),
    "ChromaTransformer2DModel": Tiny(dict(
        patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, axes_dims_rope=[4, 4, 8], approximator_num_channels=8, approximator_hidden_dim=16,
        approximator_layers=1), height=8, width=8),
    "LongCatImageTransformer2DModel": Tiny(dict(
        patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8]), height=8, width=8),
    "OvisImageTransformer2DModel": Tiny(dict(
        patch_size=1, in_channels=4, out_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, axes_dims_rope=(4, 4, 8)), height=8, width=8),
    "Flux2Transformer2DModel": Tiny(dict(
        patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, timestep_guidance_channels=256, axes_dims_rope=[4, 4, 4, 4]), height=8, width=8),
    "CogView3PlusTransformer2DModel": Tiny(dict(
        patch_size=2, in_channels=4, num_layers=2, attention_head_dim=4, num_attention_heads=2, out_channels=4,
        text_embed_dim=8, time_embed_dim=8, condition_dim=2, pos_embed_max_size=8, sample_size=8), height=8, width=8),
    "CogView4Transformer2DModel": Tiny(dict(
        patch_size=2, in_channels=4, num_layers=2, attention_head_dim=4, num_attention_heads=4, out_channels=4,
        text_embed_dim=8, time_embed_dim=8, condition_dim=4), height=8, width=8,
        notes="its `ff` runs twice per block (image, then text stream): not a component"),
    "GlmImageTransformer2DModel": Tiny(dict(
        patch_size=2, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=8, num_attention_heads=2,
        text_embed_dim=32, time_embed_dim=16, condition_dim=8, prior_vq_quantizer_codebook_size=64),
        height=8, width=8, text=12, notes="its `ff` runs twice per block (image, then text stream): not a component"),
    "AuraFlowTransformer2DModel": Tiny(dict(
        sample_size=32, patch_size=2, in_channels=4, num_mmdit_layers=1, num_single_dit_layers=1,
        attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=32,
        out_channels=4, pos_embed_max_size=256), height=16, width=16, text=16),
    "DiTTransformer2DModel": Tiny(dict(
        in_channels=4, out_channels=8, activation_fn="gelu-approximate", num_attention_heads=2, attention_head_dim=4,
        attention_bias=True, num_layers=2, norm_type="ada_norm_zero", num_embeds_ada_norm=8, patch_size=2,
        sample_size=8), height=8, width=8),
    "SanaTransformer2DModel": Tiny(dict(
        patch_size=1, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=4, num_attention_heads=2,
        num_cross_attention_heads=2, cross_attention_head_dim=4, cross_attention_dim=8, caption_channels=8,
        sample_size=32), height=8, width=8),
    "Lumina2Transformer2DModel": Tiny(dict(
        sample_size=16, patch_size=2, in_channels=4, hidden_size=24, num_layers=2, num_refiner_layers=1,
        num_attention_heads=3, num_kv_heads=1, multiple_of=2, ffn_dim_multiplier=None, norm_eps=1e-5,
        scaling_factor=1.0, axes_dim_rope=(4, 2, 2), axes_lens=(128, 128, 128), cap_feat_dim=32), text=16),
    "LuminaNextDiT2DModel": Tiny(dict(
        sample_size=16, patch_size=2, in_channels=4, hidden_size=24, num_layers=2, num_attention_heads=3,
        num_kv_heads=1, multiple_of=16, ffn_dim_multiplier=None, norm_eps=1e-5, learn_sigma=False, qk_norm=True,
        cross_attention_dim=32, scaling_factor=1.0), text=16,
        notes="its attentions return unflattened heads: no residual reuse on them"),
    "HiDreamImageTransformer2DModel": Tiny(dict(
        patch_size=2, in_channels=4, out_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=8,
        num_attention_heads=4, caption_channels=[8, 4], text_emb_dim=8, num_routed_experts=2,
        num_activated_experts=2, axes_dims_rope=(4, 2, 2), max_resolution=(32, 32), llama_layers=(0, 1),
        force_inference_output=True), height=32, width=32),
    "HunyuanDiT2DModel": Tiny(dict(
        sample_size=8, patch_size=2, in_channels=4, num_layers=2, attention_head_dim=8, num_attention_heads=2,
        cross_attention_dim=8, cross_attention_dim_t5=8, pooled_projection_dim=4, hidden_size=16, text_len=4,
        text_len_t5=4, activation_fn="gelu-approximate"), height=8, width=8, text=4),
    "ZImageTransformer2DModel": Tiny(dict(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=16, n_layers=2, n_refiner_layers=1,
        n_heads=1, n_kv_heads=2, qk_norm=True, cap_feat_dim=16, rope_theta=256.0, t_scale=1000.0, axes_dims=[8, 4, 4],
        axes_lens=[256, 32, 32]), text=16),
    "NucleusMoEImageTransformer2DModel": Tiny(dict(
        patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=4,
        joint_attention_dim=16, axes_dims_rope=(8, 4, 4), moe_enabled=False, capacity_factors=[8.0, 8.0]),
        height=8, width=8),
    "ErnieImageTransformer2DModel": Tiny(dict(
        hidden_size=16, num_attention_heads=1, num_layers=2, ffn_hidden_size=16, in_channels=16, out_channels=16,
        patch_size=1, text_in_dim=16, rope_theta=256, rope_axes_dim=(8, 4, 4), eps=1e-6, qk_layernorm=True),
        text=16,
        notes="its blocks take sequence-first tensors: residual reuse and cond/uncond masks on its components only"),
    "PRXTransformer2DModel": Tiny(dict(
        in_channels=16, patch_size=2, context_in_dim=32, hidden_size=64, mlp_ratio=3.5, num_heads=2, depth=2,
        axes_dim=[16, 16], theta=10_000), text=16, notes="diffusers' test: 1792 channels, 4 layers; scaled down"),
    "OmniGenTransformer2DModel": Tiny(dict(
        hidden_size=16, num_attention_heads=4, num_key_value_heads=4, intermediate_size=32, num_layers=2,
        pad_token_id=0, vocab_size=1000, in_channels=4, time_step_dim=4,
        rope_scaling={"long_factor": list(range(1, 3)), "short_factor": list(range(1, 3))}), height=8, width=8,
        text=24),
    "Flux3Transformer2DModel": Tiny(dict(
        in_channels=4, cond_in_channels=4, num_layers=1, num_single_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, timestep_channels=32, mlp_ratio=2.0,
        axes_dims_rope=(4, 4, 4, 4)),
        height=8, width=8, notes="no diffusers test: defaults scaled down"),
    "HunyuanImageTransformer2DModel": Tiny(dict(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8, num_layers=1,
        num_single_layers=1, num_refiner_layers=1, mlp_ratio=2.0, patch_size=(1, 1), guidance_embeds=True,
        text_embed_dim=16, text_embed_2_dim=8, rope_axes_dim=(4, 4)), height=8, width=8,
        notes="no diffusers test: defaults scaled down"),
    "QwenImage21Transformer2DModel": Tiny(dict(
        patch_size=1, in_channels=16, out_channels=16, num_layers=2, attention_head_dim=16, num_attention_heads=2,
        context_in_dim=16, mlp_ratio=2, axes_dims_rope=(4, 6, 6)), height=8, width=8,
        notes="no diffusers test: defaults scaled down"),
    "BriaFibo2Transformer2DModel": Tiny(dict(
        in_channels=4, patch_size=2, dim=32, n_layers=2, n_refiner_layers=1, n_heads=2, cap_feat_dim=16,
        injection_layer_ids=(1,), perceiver_num_layers=1, min_num_gist_tokens=4, max_num_gist_tokens=8, gist_step=4,
        gist_min_text_len=4, gist_max_text_len=16, axes_dims=(4, 6, 6), axes_lens=(64, 32, 32)), height=8, width=8,
        notes="no diffusers test: defaults scaled down"),
    "Ideogram4Transformer2DModel": Tiny(dict(
        in_channels=16, num_layers=2, attention_head_dim=8, num_attention_heads=4, intermediate_size=32,
        adaln_dim=16, llm_features_dim=24, rope_theta=10_000, mrope_section=(2, 1, 1), norm_eps=1e-5),
        height=4, width=4, text=4),
    "Krea2Transformer2DModel": Tiny(dict(
        in_channels=16, num_layers=2, attention_head_dim=8, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=32, timestep_embed_dim=8, text_hidden_dim=16, num_text_layers=3,
        text_num_attention_heads=2, text_num_key_value_heads=1, text_intermediate_size=16,
        num_layerwise_text_blocks=1, num_refiner_text_blocks=1, axes_dims_rope=(4, 2, 2), rope_theta=1000.0,
        norm_eps=1e-5), height=4, width=4, text=4),
    "JoyImageEditTransformer3DModel": Tiny(dict(
        patch_size=[1, 2, 2], in_channels=16, hidden_size=32, num_attention_heads=2, text_dim=16, num_layers=2,
        rope_dim_list=[4, 6, 6], theta=256), height=4, width=4, text=12),
    "JoyImageEditPlusTransformer3DModel": Tiny(dict(
        patch_size=[1, 2, 2], in_channels=16, hidden_size=32, num_attention_heads=2, text_dim=16, num_layers=2,
        rope_dim_list=[4, 6, 6], theta=256), height=4, width=4, text=12),
    "Transformer2DModel": Tiny(dict(
        in_channels=4, out_channels=8, activation_fn="gelu-approximate", num_attention_heads=2, attention_head_dim=4,
        attention_bias=True, num_layers=2, norm_type="ada_norm_zero", num_embeds_ada_norm=8, patch_size=2,
        sample_size=8), height=8, width=8, notes="the DiT test's configuration on the legacy class"),
    # video
    "SkyReelsV2Transformer3DModel": Tiny(dict(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
        text_dim=16, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32), frames=2, height=16, width=16, text=12),
    "ChronoEditTransformer3DModel": Tiny(dict(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=16, out_channels=16,
        text_dim=32, freq_dim=16, ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        eps=1e-06, image_dim=None, added_kv_proj_dim=None, rope_max_seq_len=64, pos_embed_seq_len=None,
        rope_temporal_skip_len=8), frames=2, height=8, width=8, text=12),
    "WanVACETransformer3DModel": Tiny(dict(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
        text_dim=32, freq_dim=256, ffn_dim=32, num_layers=4, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32, vace_layers=[0, 2], vace_in_channels=48), frames=2, height=16, width=16, text=12),
    "WanAnimateTransformer3DModel": Tiny(dict(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=12, latent_channels=4,
        out_channels=4, text_dim=16, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", image_dim=16, rope_max_seq_len=32,
        motion_encoder_channel_sizes={"4": 16, "8": 16, "16": 16}, motion_encoder_size=16, motion_style_dim=8,
        motion_dim=4, motion_encoder_dim=16, face_encoder_hidden_dim=16, face_encoder_num_heads=2,
        inject_face_latents_blocks=2), frames=21, height=16, width=16, text=12),
    "AnyFlowTransformer3DModel": Tiny(dict(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
        text_dim=16, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        rope_max_seq_len=32, gate_value=0.25, deltatime_type="r"),
        frames=2, height=16, width=16, text=12),
    "AnyFlowFARTransformer3DModel": Tiny(dict(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
        text_dim=16, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        rope_max_seq_len=32, gate_value=0.25, deltatime_type="r",
        compressed_patch_size=(1, 4, 4), full_chunk_limit=3), frames=2, height=16, width=16, text=12),
    "AllegroTransformer3DModel": Tiny(dict(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4, num_layers=2,
        cross_attention_dim=16, sample_width=8, sample_height=8, sample_frames=8, caption_channels=8),
        frames=2, height=8, width=8, text=16),
    "ConsisIDTransformer3DModel": Tiny(dict(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4, time_embed_dim=2,
        text_embed_dim=8, num_layers=2, sample_width=8, sample_height=8, sample_frames=8, patch_size=2,
        temporal_compression_ratio=4, max_text_seq_length=8, cross_attn_interval=1, is_kps=False,
        is_train_face=True, cross_attn_dim_head=1, cross_attn_num_heads=1, LFE_id_dim=2, LFE_vit_dim=2, LFE_depth=5,
        LFE_dim_head=8, LFE_num_heads=2, LFE_num_id_token=1, LFE_num_querie=1, LFE_output_dim=10, LFE_ff_mult=1,
        LFE_num_scale=1), frames=1, height=8, width=8),
    "CosmosTransformer3DModel": Tiny(dict(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=12, num_layers=2, mlp_ratio=2,
        text_embed_dim=16, adaln_lora_dim=4, max_size=(4, 32, 32), patch_size=(1, 2, 2), rope_scale=(2.0, 1.0, 1.0),
        concat_padding_mask=True, extra_pos_embed_type="learnable"), frames=1, height=16, width=16, text=12),
    "EasyAnimateTransformer3DModel": Tiny(dict(
        attention_head_dim=16, num_attention_heads=2, in_channels=4, mmdit_layers=2, num_layers=2, out_channels=4,
        patch_size=2, sample_height=60, sample_width=90, text_embed_dim=16, time_embed_dim=8,
        time_position_encoding_type="3d_rope", timestep_activation_fn="silu"), frames=2, height=16, width=16, text=16),
    "HeliosTransformer3DModel": Tiny(dict(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
        text_dim=16, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        rope_dim=(4, 4, 4), has_multi_term_memory_patch=True, guidance_cross_attn=True,
        zero_history_timestep=True, is_amplify_history=False), frames=2, height=16, width=16, text=12),
    "HunyuanVideo15Transformer3DModel": Tiny(dict(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8, num_layers=2,
        num_refiner_layers=1, mlp_ratio=2.0, patch_size=1, patch_size_t=1, text_embed_dim=16, text_embed_2_dim=8,
        image_embed_dim=12, rope_axes_dim=(2, 2, 4), target_size=16, task_type="t2v"), frames=1, height=8, width=8,
        text=6),
    "HunyuanVideoFramepackTransformer3DModel": Tiny(dict(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=10, num_layers=1,
        num_single_layers=1, num_refiner_layers=1, patch_size=2, patch_size_t=1, guidance_embeds=True,
        text_embed_dim=16, pooled_projection_dim=8, rope_axes_dim=(2, 4, 4), image_condition_type=None,
        has_image_proj=True, image_proj_dim=16, has_clean_x_embedder=True), frames=3, height=4, width=4, text=12),
    "LatteTransformer3DModel": Tiny(dict(
        sample_size=8, num_layers=1, patch_size=2, attention_head_dim=4, num_attention_heads=2, caption_channels=8,
        in_channels=4, cross_attention_dim=8, out_channels=8, attention_bias=True, activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000, norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6,
        video_length=2), frames=2, height=8, width=8,
        notes="spatial and temporal blocks run interleaved; the table lists them per block list"),
    "MochiTransformer3DModel": Tiny(dict(
        patch_size=2, num_attention_heads=2, attention_head_dim=8, num_layers=2, pooled_projection_dim=16,
        in_channels=4, out_channels=None, qk_norm="rms_norm", text_embed_dim=16, time_embed_dim=4,
        activation_fn="swiglu", max_sequence_length=16), frames=2, height=16, width=16, text=16),
    "MotifVideoTransformer3DModel": Tiny(dict(
        in_channels=33, out_channels=16, num_attention_heads=2, attention_head_dim=12, num_layers=1,
        num_single_layers=1, num_decoder_layers=0, mlp_ratio=4.0, patch_size=1, patch_size_t=1, qk_norm="rms_norm",
        norm_type="layer_norm", text_embed_dim=32, image_embed_dim=4, rope_theta=256.0, rope_axes_dim=(4, 4, 4),
        enable_text_cross_attention_dual=False, enable_text_cross_attention_single=False),
        frames=3, height=8, width=8, text=12),
    "SanaVideoTransformer3DModel": Tiny(dict(
        in_channels=16, out_channels=16, num_attention_heads=2, attention_head_dim=12, num_layers=2,
        num_cross_attention_heads=2, cross_attention_head_dim=12, cross_attention_dim=24, caption_channels=16,
        mlp_ratio=2.5, dropout=0.0, attention_bias=False, sample_size=8, patch_size=(1, 2, 2),
        norm_elementwise_affine=False, norm_eps=1e-6, qk_norm="rms_norm_across_heads", rope_max_seq_len=32),
        frames=2, height=16, width=16, text=12),
    "LTX2VideoTransformer3DModel": Tiny(dict(
        in_channels=4, out_channels=4, patch_size=1, patch_size_t=1, num_attention_heads=2, attention_head_dim=8,
        cross_attention_dim=16, audio_in_channels=4, audio_out_channels=4, audio_num_attention_heads=2,
        audio_attention_head_dim=4, audio_cross_attention_dim=8, num_layers=2, qk_norm="rms_norm_across_heads",
        caption_channels=16, rope_double_precision=False), frames=2, height=8, width=8, text=16),
    "Kandinsky5Transformer3DModel": Tiny(dict(
        in_visual_dim=4, in_text_dim=16, in_text_dim2=8, time_dim=16, out_visual_dim=4, patch_size=(1, 2, 2),
        model_dim=32, ff_dim=64, num_text_blocks=1, num_visual_blocks=2, axes_dims=(4, 6, 6)),
        frames=2, height=8, width=8, notes="no diffusers test: defaults scaled down"),
    "Kandinsky6Transformer3DModel": Tiny(dict(
        in_visual_dim=4, out_visual_dim=4, in_text_dim=16, in_text_dim2=8, time_dim=16, patch_size=(1, 2, 2),
        model_dim=32, ff_dim=64, num_text_blocks=1, num_visual_blocks=2, axes_dims=(4, 6, 6), visual_cond=False,
        in_audio_dim=4, out_audio_dim=4), frames=2, height=8, width=8,
        notes="no diffusers test: defaults scaled down; video alone (the audio stream's modules are no components)"),
    "Kandinsky6SRTransformer3DModel": Tiny(dict(
        in_visual_dim=4, out_visual_dim=4, time_dim=16, model_dim=32, ff_dim=64, num_visual_blocks=2,
        axes_dims=(4, 6, 6)), frames=2, height=8, width=8, notes="no diffusers test: defaults scaled down"),
    "SanaWMTransformer3DModel": Tiny(dict(
        in_channels=4, num_layers=2, hidden_size=32, num_attention_heads=2, linear_head_dim=16, caption_channels=16,
        chunk_plucker_post_attn_blocks=2, chunk_plucker_channels=8, image_size=64, mixed_precision="fp32"),
        frames=2, height=8, width=8, text=6, notes="no diffusers test: defaults scaled down"),
    "MiniMaxH3Transformer3DModel": Tiny(dict(
        num_attention_heads=2, attention_head_dim=16, hidden_size=24, num_layers=2, num_refiner_layers=2, ffn_dim=32,
        in_channels=4, audio_in_channels=6, patch_size=(1, 2, 2), text_dim=8, freq_dim=8, time_embed_hidden_dim=24,
        time_embed_dim=16, rope_freq_dim=2), frames=2, height=4, width=4, text=4),
    "Cosmos3OmniTransformer": Tiny(dict(
        head_dim=6, hidden_act="relu2", hidden_size=12, intermediate_size=24, latent_channel=2, latent_patch_size=1,
        num_attention_heads=2, num_hidden_layers=2, num_key_value_heads=1, patch_latent_dim=2,
        qk_norm_for_text=False, rms_norm_eps=1e-5, rope_axes_dim=[1, 1, 1], rope_theta=1e8, vocab_size=32),
        frames=1, height=2, width=2, text=2),
    "WanAnimate2Transformer3DModel": Tiny(dict(
        patch_size=(1, 2, 2), text_len=16, in_dim=36, dim=128, ffn_dim=256, freq_dim=64, text_dim=32, out_dim=16,
        num_heads=4, num_layers=2, cross_attn_norm=True, use_img_emb=True), frames=3, height=4, width=4, text=8,
        notes="a step call (`kv_cache_mode='cached'`) on a KV cache holding the reference pass's keys and values; "
              "the reference pass of each clip segment runs uncached beside the steps, the CFG passes are named by "
              "`is_uncondtion`"),
    "SanaWMLTX2RefinerTransformer3DModel": Tiny(dict(
        in_channels=4, out_channels=4, patch_size=1, patch_size_t=1, num_attention_heads=2, attention_head_dim=8,
        cross_attention_dim=16, audio_in_channels=4, audio_out_channels=4, audio_num_attention_heads=2,
        audio_attention_head_dim=4, audio_cross_attention_dim=8, num_layers=2, qk_norm="rms_norm_across_heads",
        caption_channels=16, rope_double_precision=False), frames=2, height=4, width=4, text=8,
        notes="a step call (`kv_cache_mode='inject'`) on a KV cache holding a sink and a history; the KV-cache "
              "captures run uncached beside the steps"),
    "WanTransformer3DModel": Tiny(dict(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
        text_dim=16, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32), frames=2, height=16, width=16, text=12),
    "HunyuanVideoTransformer3DModel": Tiny(dict(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=10, num_layers=1,
        num_single_layers=1, num_refiner_layers=1, patch_size=1, patch_size_t=1, guidance_embeds=True,
        text_embed_dim=16, pooled_projection_dim=8, rope_axes_dim=(2, 4, 4), image_condition_type=None),
        frames=1, height=16, width=16, text=12),
    "LTXVideoTransformer3DModel": Tiny(dict(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16,
        num_layers=2, qk_norm="rms_norm_across_heads", caption_channels=16), frames=2, height=16, width=16, text=16),
    "CogVideoXTransformer3DModel": Tiny(dict(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4, time_embed_dim=2,
        text_embed_dim=8, num_layers=2, sample_width=8, sample_height=8, sample_frames=8, patch_size=2,
        patch_size_t=None, temporal_compression_ratio=4, max_text_seq_length=8), frames=1, height=8, width=8),
}


def build(name: str, seed: int = 0, **overrides: Any) -> torch.nn.Module:
    """The tiny model of class ``name`` (float32, eval mode, seeded; the caller's RNG untouched); ``overrides``
    replace entries of its configuration (more layers, say).

    Parameters a model initialises to zero (adaLN-zero gates, zero output projections: ERNIE-Image, PRX) are drawn
    at random too: zero gates make every block the identity and a zero output layer every output zero, and no
    check could tell a cached block from a computed one."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = getattr(diffusers, name)(**{**TINY[name].config, **overrides})
        with torch.no_grad():
            for param in model.parameters():
                if param.is_floating_point() and param.numel() > 1 and not param.any():
                    param.normal_(0.0, 0.1)
    if name == "WanAnimate2Transformer3DModel":
        tiny = TINY[name]
        uncompiled_block_mask(model, frames=tiny.frames, height=tiny.height, width=tiny.width)
    return model.eval()


def uncompiled_block_mask(model: torch.nn.Module, *, frames: int, height: int, width: int) -> None:
    """Build Wan-Animate 2's flex-attention block mask for a generation pass of ``frames`` latent frames of
    ``height × width`` latents (the key its forward looks the mask up by) with ``create_block_mask(_compile=False)``.

    The model builds it on first use with ``_compile=True``: 15–35 s of inductor compilation per test process on
    the 2-core test machine. ``_compile`` only chooses how the mask is computed (compiled or eager: the same block
    mask), and the model's own ``create_mask`` builds it here."""
    from unittest import mock

    import diffusers.models.transformers.transformer_wan_animate_2 as module
    from torch.nn.attention.flex_attention import create_block_mask

    def eager(*args: Any, _compile: bool = False, **kwargs: Any) -> Any:
        return create_block_mask(*args, _compile=False, **kwargs)

    key = (frames - 1, height * width // 4)  # (origin_len // 4 + 1, origin_area // 256) of the pipeline's inputs
    with mock.patch.object(module, "create_block_mask", eager):
        model.block_masks[key] = model.create_mask(*key, "cpu")


def inputs_of(model: torch.nn.Module, name: str, seed: int = 0) -> dict[str, Any]:
    tiny = TINY[name]
    return adapter_for(model).example_inputs(model, height=tiny.height, width=tiny.width, frames=tiny.frames,
                                             text=tiny.text, generator=torch.Generator().manual_seed(seed))


def _first(out: Any) -> Any:
    return out if isinstance(out, torch.Tensor) else out[0]


def _step(x: torch.Tensor, out: torch.Tensor, steps: int) -> torch.Tensor:
    if out.shape == x.shape:
        return x - out / steps
    if out.shape[0] == x.shape[0] and out.shape[2:] == x.shape[2:] and out.shape[1] > x.shape[1]:
        return x - out[:, : x.shape[1]] / steps  # PixArt also predicts a variance
    return x


def sample(model: torch.nn.Module, name: str, steps: int = 4, *, context: bool = False) -> torch.Tensor:
    """``steps`` calls from the seeded example inputs: the final latent and every call's output, flattened
    (latents that are per-sample lists, as Z-Image's, step sample by sample). ``context=True`` sets diffusers'
    cache context ``"cond"`` around each call, which its stateful hooks (TaylorSeer) need outside a pipeline."""
    example = example_for(model)
    inputs = inputs_of(model, name)
    x = inputs[example.latent]
    t = inputs[example.timestep]
    outs = []
    with torch.no_grad():
        for s in range(steps):
            inputs[example.latent] = x
            inputs[example.timestep] = torch.full_like(t, (1 - s / steps) * example.timestep_scale)
            if context:
                _set_cache_context(model, CacheContext("cond"))
            try:
                out = _first(model(**inputs, return_dict=False))
            finally:
                if context:
                    _set_cache_context(model, None)
            if isinstance(x, list):
                outs += [o.flatten() for o in out]
                x = [_step(a, o, steps) for a, o in zip(x, out)]
            else:
                outs.append(out.flatten())
                x = _step(x, out, steps)
    return torch.cat([*(a.flatten() for a in (x if isinstance(x, list) else [x])), *outs])
