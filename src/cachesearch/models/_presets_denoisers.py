"""Denoiser-only ``arch:`` presets: the published transformer configurations of current image and video models, built
on the meta device for their per-block MACs (``cachesearch blocks --model arch:<name>``).

Each configuration is the model repository's ``transformer/config.json`` as its diffusers port wrote it (constructor
arguments only; provenance keys dropped), taken from the source cited beside it — diffusers' own conversion scripts
where they hold it, otherwise a public copy of the hub file — never reconstructed from a paper. The default size is
what the model's pipeline renders (its ``__call__`` defaults, or the model's published generation settings where the
pipeline has none of its own), with the VAE compression that maps it to latents; a test checks each build against
the model's published parameter count. Weights are never allocated: these presets exist for costs, and
``load_model`` refuses them with a one-line error (a pipeline needs the real text encoders and VAE).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch

__all__ = ["DENOISER_PRESETS", "DenoiserPreset", "build_preset_denoiser", "preset"]


@dataclass(frozen=True)
class DenoiserPreset:
    """A published denoiser architecture and the size its pipeline renders.

    Attributes:
        cls: the diffusers class.
        config: its published constructor arguments.
        source: where the configuration was read.
        height, width: pixels the pipeline renders by default; ``frames``: frames per clip (``None``: images).
        spatial, temporal: pixels per latent pixel and frames per latent frame (the VAE's compression).
        params_b: the size the model is published under, in billions of parameters ("Wan 2.1 1.3B", "CogVideoX-5B";
            the build is checked to be within 12 % of it).
        experts: 2 for a pipeline that switches between two experts of this architecture (Wan 2.2 A14B).
        pipeline: what a full pipeline of it is (for the refusal message).
    """

    cls: str
    config: Mapping[str, Any]
    source: str
    height: int
    width: int
    spatial: int
    params_b: float
    frames: int | None = None
    temporal: int = 4
    experts: int = 1
    pipeline: str = ""

    def latent_size(self, height: int | None = None, width: int | None = None,
                    frames: int | None = None) -> tuple[int, int, int | None]:
        """``(latent height, latent width, latent frames)`` for a render of the given (default) size."""
        h, w = height or self.height, width or self.width
        f = frames or self.frames
        lf = None if f is None else (f - 1) // self.temporal + 1
        return h // self.spatial, w // self.spatial, lf


# scripts/convert_wan_to_diffusers.py in huggingface/diffusers: get_transformer_config("Wan-T2V-1.3B").
_WAN21_13B = {"added_kv_proj_dim": None, "attention_head_dim": 128, "cross_attn_norm": True, "eps": 1e-06,
              "ffn_dim": 8960, "freq_dim": 256, "in_channels": 16, "num_attention_heads": 12, "num_layers": 30,
              "out_channels": 16, "patch_size": [1, 2, 2], "qk_norm": "rms_norm_across_heads", "text_dim": 4096}
# The same script: "Wan-T2V-14B"; its "Wan2.2-T2V-A14B" (both experts, high_noise_model and low_noise_model) is
# identical.
_WAN_14B = {**_WAN21_13B, "ffn_dim": 13824, "num_attention_heads": 40, "num_layers": 40}
# The same script: "Wan2.2-TI2V-5B" (48 latent channels of the Wan 2.2 VAE).
_WAN22_5B = {**_WAN21_13B, "ffn_dim": 14336, "in_channels": 48, "out_channels": 48, "num_attention_heads": 24}

_PRESETS: dict[str, DenoiserPreset] = {
    # WanPipeline's defaults: 480 x 832, 81 frames; VAE 8x in space, 4x in time.
    "wan2.1-1.3b": DenoiserPreset("WanTransformer3DModel", _WAN21_13B, "diffusers scripts/convert_wan_to_diffusers.py "
                                  "(Wan-T2V-1.3B)", 480, 832, 8, 1.3, frames=81, pipeline="WanPipeline"),
    "wan2.1-14b": DenoiserPreset("WanTransformer3DModel", _WAN_14B, "diffusers scripts/convert_wan_to_diffusers.py "
                                 "(Wan-T2V-14B)", 480, 832, 8, 14.0, frames=81, pipeline="WanPipeline"),
    # Wan-Video/Wan2.2 wan/configs/wan_ti2v_5B.py (frame_num 121, vae_stride (4, 16, 16)) and its README's
    # --size 1280*704, as vendored in ml-explore/mlx-examples video/Wan2.2.
    "wan2.2-5b": DenoiserPreset("WanTransformer3DModel", _WAN22_5B, "diffusers scripts/convert_wan_to_diffusers.py "
                                "(Wan2.2-TI2V-5B)", 704, 1280, 16, 5.0, frames=121, pipeline="WanPipeline"),
    "wan2.2-a14b": DenoiserPreset("WanTransformer3DModel", _WAN_14B, "diffusers scripts/convert_wan_to_diffusers.py "
                                  "(Wan2.2-T2V-A14B, each expert)", 480, 832, 8, 14.0, frames=81, experts=2,
                                  pipeline="WanPipeline with transformer_2 (boundary_ratio 0.875)"),
    # Qwen/Qwen-Image transformer/config.json as quoted in kohya-ss/musubi-tuner
    # src/musubi_tuner/qwen_image/qwen_image_model.py (pooled_projection_dim, which the class does not take, dropped).
    # QwenImagePipeline: default_sample_size 128 x VAE 8 = 1024 px.
    "qwen-image": DenoiserPreset("QwenImageTransformer2DModel", {
        "attention_head_dim": 128, "axes_dims_rope": [16, 56, 56], "guidance_embeds": False, "in_channels": 64,
        "joint_attention_dim": 3584, "num_attention_heads": 24, "num_layers": 60, "out_channels": 16,
        "patch_size": 2}, "Qwen/Qwen-Image transformer/config.json (kohya-ss/musubi-tuner qwen_image_model.py)",
        1024, 1024, 8, 20.0, pipeline="QwenImagePipeline"),
    # diffusers scripts/convert_flux2_to_diffusers.py: get_flux2_transformer_config("flux2-dev").
    # Flux2Pipeline: default_sample_size 128 x VAE 8 = 1024 px.
    "flux2-dev": DenoiserPreset("Flux2Transformer2DModel", {
        "patch_size": 1, "in_channels": 128, "num_layers": 8, "num_single_layers": 48, "attention_head_dim": 128,
        "num_attention_heads": 48, "joint_attention_dim": 15360, "timestep_guidance_channels": 256,
        "mlp_ratio": 3.0, "axes_dims_rope": [32, 32, 32, 32], "rope_theta": 2000, "eps": 1e-6},
        "diffusers scripts/convert_flux2_to_diffusers.py (flux2-dev)", 1024, 1024, 8, 32.0, pipeline="Flux2Pipeline"),
    # diffusers scripts/convert_hunyuan_video_to_diffusers.py: TRANSFORMER_CONFIGS["HYVideo-T/2-cfgdistill"]
    # (hunyuanvideo-community/HunyuanVideo). HunyuanVideoPipeline's defaults: 720 x 1280, 129 frames.
    "hunyuanvideo": DenoiserPreset("HunyuanVideoTransformer3DModel", {
        "in_channels": 16, "out_channels": 16, "num_attention_heads": 24, "attention_head_dim": 128,
        "num_layers": 20, "num_single_layers": 40, "num_refiner_layers": 2, "mlp_ratio": 4.0, "patch_size": 2,
        "patch_size_t": 1, "qk_norm": "rms_norm", "guidance_embeds": True, "text_embed_dim": 4096,
        "pooled_projection_dim": 768, "rope_theta": 256.0, "rope_axes_dim": [16, 56, 56],
        "image_condition_type": None},
        "diffusers scripts/convert_hunyuan_video_to_diffusers.py (HYVideo-T/2-cfgdistill)", 720, 1280, 8, 13.0,
        frames=129, pipeline="HunyuanVideoPipeline"),
    # diffusers scripts/convert_ltx_to_diffusers.py: get_transformer_config for versions before 0.9.7
    # (Lightricks/LTX-Video, 2B). LTXPipeline's defaults: 512 x 704, 161 frames; VAE 32x in space, 8x in time.
    "ltx-video": DenoiserPreset("LTXVideoTransformer3DModel", {
        "in_channels": 128, "out_channels": 128, "patch_size": 1, "patch_size_t": 1, "num_attention_heads": 32,
        "attention_head_dim": 64, "cross_attention_dim": 2048, "num_layers": 28, "activation_fn": "gelu-approximate",
        "qk_norm": "rms_norm_across_heads", "norm_elementwise_affine": False, "norm_eps": 1e-6,
        "caption_channels": 4096, "attention_bias": True, "attention_out_bias": True},
        "diffusers scripts/convert_ltx_to_diffusers.py (0.9.0-0.9.5)", 512, 704, 32, 2.0, frames=161, temporal=8,
        pipeline="LTXPipeline"),
    # diffusers scripts/convert_cogvideox_to_diffusers.py: version 1.0 init kwargs with its "for 5B" values
    # (num_layers 42, num_attention_heads 48, rotary embeddings). CogVideoXPipeline: 480 x 720 (sample_height/
    # width x 8), 49 frames.
    "cogvideox-5b": DenoiserPreset("CogVideoXTransformer3DModel", {
        "in_channels": 16, "num_layers": 42, "num_attention_heads": 48, "use_rotary_positional_embeddings": True,
        "patch_size": 2, "patch_size_t": None, "patch_bias": True, "sample_height": 60, "sample_width": 90,
        "sample_frames": 49}, "diffusers scripts/convert_cogvideox_to_diffusers.py (version 1.0, 5B)", 480, 720, 8,
        5.0, frames=49, pipeline="CogVideoXPipeline"),
    # Tongyi-MAI/Z-Image-Turbo transformer/config.json, quoted verbatim by several public ports (e.g. the
    # z-image-turbo MLX converters; every copy found agrees). ZImagePipeline: 1024 px.
    "z-image": DenoiserPreset("ZImageTransformer2DModel", {
        "all_f_patch_size": [1], "all_patch_size": [2], "axes_dims": [32, 48, 48], "axes_lens": [1536, 512, 512],
        "cap_feat_dim": 2560, "dim": 3840, "in_channels": 16, "n_heads": 30, "n_kv_heads": 30, "n_layers": 30,
        "n_refiner_layers": 2, "norm_eps": 1e-05, "qk_norm": True, "rope_theta": 256.0, "t_scale": 1000.0},
        "Tongyi-MAI/Z-Image-Turbo transformer/config.json", 1024, 1024, 8, 6.0, pipeline="ZImagePipeline"),
    # diffusers scripts/convert_sana_to_diffusers.py: SanaMS_1600M_P1_D20 at image_size 1024
    # (Efficient-Large-Model/Sana_1600M_1024px_diffusers). SanaPipeline: 1024 px; DC-AE 32x.
    "sana": DenoiserPreset("SanaTransformer2DModel", {
        "in_channels": 32, "out_channels": 32, "num_attention_heads": 70, "attention_head_dim": 32, "num_layers": 20,
        "num_cross_attention_heads": 20, "cross_attention_head_dim": 112, "cross_attention_dim": 2240,
        "caption_channels": 2304, "mlp_ratio": 2.5, "attention_bias": False, "sample_size": 32, "patch_size": 1,
        "norm_elementwise_affine": False, "norm_eps": 1e-6, "interpolation_scale": None},
        "diffusers scripts/convert_sana_to_diffusers.py (SanaMS_1600M_P1_D20, 1024 px)", 1024, 1024, 32, 1.6,
        pipeline="SanaPipeline"),
    # HiDream-ai/HiDream-I1-Full transformer/config.json as written in hlky/diffusers
    # scripts/convert_hidream_to_diffusers.py (the diffusers port). HiDreamImagePipeline: 128 x VAE 8 = 1024 px.
    "hidream": DenoiserPreset("HiDreamImageTransformer2DModel", {
        "attention_head_dim": 128, "axes_dims_rope": [64, 32, 32], "caption_channels": [4096, 4096],
        "max_resolution": [128, 128], "in_channels": 16, "llama_layers": list(range(32)) + [31] * 16,
        "num_attention_heads": 20, "num_routed_experts": 4, "num_activated_experts": 2, "num_layers": 16,
        "num_single_layers": 32, "out_channels": 16, "patch_size": 2, "text_emb_dim": 2048},
        "HiDream-ai/HiDream-I1-Full transformer/config.json (hlky/diffusers scripts/convert_hidream_to_diffusers.py)",
        1024, 1024, 8, 17.0, pipeline="HiDreamImagePipeline"),
}

DENOISER_PRESETS: tuple[str, ...] = tuple(_PRESETS)
"""Names of the denoiser-only presets (``arch:wan2.1-1.3b``, ...)."""


def preset(name: str) -> DenoiserPreset:
    """The preset called ``name`` (an optional ``arch:`` prefix is dropped)."""
    return MappingProxyType(_PRESETS)[name.removeprefix("arch:")]


def build_preset_denoiser(name: str, *, device: torch.device | str = "meta",
                          dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """The denoiser of preset ``name`` on the meta device (parameters shaped, nothing allocated), in eval mode."""
    import diffusers

    if torch.device(device).type != "meta":
        raise ValueError(f"arch:{name} is a denoiser-only preset for costs: build it on device='meta'")
    spec = preset(name)
    with torch.device("meta"):
        model = getattr(diffusers, spec.cls).from_config(dict(spec.config))
    if dtype != torch.float32:
        model = model.to(dtype=dtype)
    model.eval()
    model._cachesearch_random_weights = True
    return model
