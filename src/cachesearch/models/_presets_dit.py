"""Random-weight transformer ``arch:`` presets: FLUX.1-dev, SD3.5-medium and PixArt-Σ, for latency work.

The configurations are the published ``config.json`` files of ``black-forest-labs/FLUX.1-dev``,
``stabilityai/stable-diffusion-3.5-medium`` and ``PixArt-alpha/PixArt-Sigma-XL-2-1024-MS`` (transformer, VAE,
scheduler) and of the text encoders they ship (``openai/clip-vit-large-patch14``, ``laion/CLIP-ViT-bigG-14``,
``google/t5-v1_1-xxl``), written out as Python dicts from those files as published on the hub (nothing is
downloaded; transformer and VAE keys are also diffusers' own constructor arguments). The transformer parameter
counts they give (FLUX.1-dev 11.90 B, SD3.5-medium 2.24 B, PixArt-Σ XL 0.61 B) are checked in the tests.

As with the UNet presets (:mod:`._presets`), weights are random (**never report quality for these models**),
everything built here carries ``_cachesearch_random_weights = True``, parameters are created on ``meta`` and
allocated once, and tokenizers are generated offline (one id per character; the T5 one from
:func:`cachesearch.models._tokenizer.char_t5_tokenizer`), padded to the real lengths so the text encoders
and the joint/cross attention do the real work. Build on ``device="meta"`` for MACs
(:func:`cachesearch.models.denoiser_costs`): nothing is allocated.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    DPMSolverMultistepScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    PixArtSigmaPipeline,
    PixArtTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel

from cachesearch.models._arch_build import CLIP_BIGG_TEXT, CLIP_L_TEXT, _build
from cachesearch.models._tokenizer import char_clip_tokenizer, char_t5_tokenizer

__all__ = ["DIT_PRESETS", "build_dit", "dit_configs", "dit_param_counts"]

# black-forest-labs/FLUX.1-dev transformer/config.json: 19 double-stream + 38 single-stream blocks, 24 heads x 128.
_FLUX_DEV_TRANSFORMER: dict[str, Any] = {
    "attention_head_dim": 128,
    "axes_dims_rope": [16, 56, 56],
    "guidance_embeds": True,
    "in_channels": 64,
    "joint_attention_dim": 4096,
    "num_attention_heads": 24,
    "num_layers": 19,
    "num_single_layers": 38,
    "patch_size": 1,
    "pooled_projection_dim": 768,
}

# black-forest-labs/FLUX.1-dev vae/config.json (16 latent channels, no quant convs).
_FLUX_VAE: dict[str, Any] = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "force_upcast": True,
    "in_channels": 3,
    "latent_channels": 16,
    "layers_per_block": 2,
    "mid_block_add_attention": True,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 1024,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "use_post_quant_conv": False,
    "use_quant_conv": False,
}

# black-forest-labs/FLUX.1-dev scheduler/scheduler_config.json.
_FLUX_SCHEDULER: dict[str, Any] = {
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "max_image_seq_len": 4096,
    "max_shift": 1.15,
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
}

# stabilityai/stable-diffusion-3.5-medium transformer/config.json: 24 MMDiT-X blocks, 24 heads x 64, dual
# attention in the first 13.
_SD35_MEDIUM_TRANSFORMER: dict[str, Any] = {
    "attention_head_dim": 64,
    "caption_projection_dim": 1536,
    "dual_attention_layers": list(range(13)),
    "in_channels": 16,
    "joint_attention_dim": 4096,
    "num_attention_heads": 24,
    "num_layers": 24,
    "out_channels": 16,
    "patch_size": 2,
    "pooled_projection_dim": 2048,
    "pos_embed_max_size": 384,
    "qk_norm": "rms_norm",
    "sample_size": 128,
}

# stabilityai/stable-diffusion-3.5-medium vae/config.json.
_SD3_VAE: dict[str, Any] = {**_FLUX_VAE, "scaling_factor": 1.5305, "shift_factor": 0.0609}

# stabilityai/stable-diffusion-3.5-medium scheduler/scheduler_config.json.
_SD3_SCHEDULER: dict[str, Any] = {"num_train_timesteps": 1000, "shift": 3.0}

# PixArt-alpha/PixArt-Sigma-XL-2-1024-MS transformer/config.json: 28 blocks, 16 heads x 72 (1152 wide); the keys
# PixArtTransformer2DModel takes (the file, written by Transformer2DModel, also has double_self_attention: false,
# num_vector_embeds: null, only_cross_attention: false, use_linear_projection: false, which it does not take).
_PIXART_SIGMA_TRANSFORMER: dict[str, Any] = {
    "activation_fn": "gelu-approximate",
    "attention_bias": True,
    "attention_head_dim": 72,
    "attention_type": "default",
    "caption_channels": 4096,
    "cross_attention_dim": 1152,
    "dropout": 0.0,
    "in_channels": 4,
    "interpolation_scale": 2,
    "norm_elementwise_affine": False,
    "norm_eps": 1e-06,
    "norm_num_groups": 32,
    "norm_type": "ada_norm_single",
    "num_attention_heads": 16,
    "num_embeds_ada_norm": 1000,
    "num_layers": 28,
    "out_channels": 8,
    "patch_size": 2,
    "sample_size": 128,
    "upcast_attention": False,
    "use_additional_conditions": False,
}

# PixArt-Sigma ships the SDXL VAE (madebyollin/sdxl-vae: 4 latent channels, scaling 0.13025).
_PIXART_VAE: dict[str, Any] = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "force_upcast": True,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

# PixArt-alpha/PixArt-Sigma-XL-2-1024-MS scheduler/scheduler_config.json (DPM-Solver++ 2M, linear betas).
_PIXART_SCHEDULER: dict[str, Any] = {
    "algorithm_type": "dpmsolver++",
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "beta_start": 0.0001,
    "dynamic_thresholding_ratio": 0.995,
    "euler_at_final": False,
    "lower_order_final": True,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "solver_order": 2,
    "solver_type": "midpoint",
    "steps_offset": 0,
    "thresholding": False,
    "timestep_spacing": "linspace",
    "use_karras_sigmas": False,
}

# google/t5-v1_1-xxl encoder (FLUX text_encoder_2, SD3 text_encoder_3, PixArt text_encoder): 24 layers, 4096 wide.
_T5_XXL: dict[str, Any] = {
    "d_ff": 10240,
    "d_kv": 64,
    "d_model": 4096,
    "dense_act_fn": "gelu_new",
    "dropout_rate": 0.1,
    "feed_forward_proj": "gated-gelu",
    "is_gated_act": True,
    "layer_norm_epsilon": 1e-06,
    "num_heads": 64,
    "num_layers": 24,
    "relative_attention_max_distance": 128,
    "relative_attention_num_buckets": 32,
    "tie_word_embeddings": False,
    "vocab_size": 32128,
}


@dataclass(frozen=True)
class _Text:
    component: str  # pipeline attribute of the encoder; its tokenizer is `tokenizer` + the same suffix
    kind: str  # "clip", "clip-projection" or "t5"
    config: Mapping[str, Any]
    max_length: int  # tokenizer padding length: 77 for CLIP, the pipeline's max_sequence_length for T5
    pad_token: str = "<|endoftext|>"

    @property
    def tokenizer(self) -> str:
        return self.component.replace("text_encoder", "tokenizer")


@dataclass(frozen=True)
class _DiTSpec:
    pipeline_cls: type
    transformer_cls: type
    transformer: Mapping[str, Any]
    vae: Mapping[str, Any]
    text_encoders: tuple[_Text, ...]
    scheduler_cls: type
    scheduler: Mapping[str, Any]
    pipeline_kwargs: Mapping[str, Any]


_DITS: dict[str, _DiTSpec] = {
    "flux": _DiTSpec(
        pipeline_cls=FluxPipeline,
        transformer_cls=FluxTransformer2DModel,
        transformer=_FLUX_DEV_TRANSFORMER,
        vae=_FLUX_VAE,
        text_encoders=(_Text("text_encoder", "clip", CLIP_L_TEXT, 77), _Text("text_encoder_2", "t5", _T5_XXL, 512)),
        scheduler_cls=FlowMatchEulerDiscreteScheduler,
        scheduler=_FLUX_SCHEDULER,
        pipeline_kwargs={"image_encoder": None, "feature_extractor": None},
    ),
    "sd3": _DiTSpec(
        pipeline_cls=StableDiffusion3Pipeline,
        transformer_cls=SD3Transformer2DModel,
        transformer=_SD35_MEDIUM_TRANSFORMER,
        vae=_SD3_VAE,
        text_encoders=(
            _Text("text_encoder", "clip-projection", CLIP_L_TEXT, 77),
            _Text("text_encoder_2", "clip-projection", CLIP_BIGG_TEXT, 77, pad_token="!"),
            _Text("text_encoder_3", "t5", _T5_XXL, 256),
        ),
        scheduler_cls=FlowMatchEulerDiscreteScheduler,
        scheduler=_SD3_SCHEDULER,
        pipeline_kwargs={"image_encoder": None, "feature_extractor": None},
    ),
    "pixart-sigma": _DiTSpec(
        pipeline_cls=PixArtSigmaPipeline,
        transformer_cls=PixArtTransformer2DModel,
        transformer=_PIXART_SIGMA_TRANSFORMER,
        vae=_PIXART_VAE,
        text_encoders=(_Text("text_encoder", "t5", _T5_XXL, 300),),
        scheduler_cls=DPMSolverMultistepScheduler,
        scheduler=_PIXART_SCHEDULER,
        pipeline_kwargs={},
    ),
}

DIT_PRESETS: tuple[str, ...] = tuple(_DITS)
"""The transformer presets (``arch:flux``, ``arch:sd3``, ``arch:pixart-sigma``)."""


def dit_configs(name: str) -> dict[str, dict[str, Any]]:
    """Deep copies of the configs of DiT preset ``name``: ``transformer``, ``vae``, each text encoder, ``scheduler``."""
    spec = _DITS[name]
    configs = {"transformer": copy.deepcopy(dict(spec.transformer)), "vae": copy.deepcopy(dict(spec.vae))}
    for te in spec.text_encoders:
        configs[te.component] = copy.deepcopy(dict(te.config))
    configs["scheduler"] = copy.deepcopy(dict(spec.scheduler))
    return configs


def _text_factory(te: _Text) -> Callable[[], torch.nn.Module]:
    if te.kind == "t5":
        return lambda: T5EncoderModel(T5Config(**copy.deepcopy(dict(te.config))))
    cls = CLIPTextModelWithProjection if te.kind == "clip-projection" else CLIPTextModel
    return lambda: cls(CLIPTextConfig(**copy.deepcopy(dict(te.config))))


def _factories(spec: _DiTSpec) -> dict[str, Callable[[], torch.nn.Module]]:
    out: dict[str, Callable[[], torch.nn.Module]] = {
        "transformer": lambda: spec.transformer_cls(**copy.deepcopy(dict(spec.transformer))),
        "vae": lambda: AutoencoderKL(**copy.deepcopy(dict(spec.vae))),
    }
    for te in spec.text_encoders:
        out[te.component] = _text_factory(te)
    return out


def build_dit(name: str, *, device: torch.device, dtype: torch.dtype, full: bool, seed: int) -> Any:
    """The pipeline (``full``) or the transformer of DiT preset ``name`` with random weights (see module doc)."""
    spec = _DITS[name]
    factories = _factories(spec)
    transformer = _build(factories.pop("transformer"), device=device, dtype=dtype, seed=seed)
    if not full:
        return transformer
    parts: dict[str, Any] = {"transformer": transformer, "scheduler": spec.scheduler_cls(**dict(spec.scheduler))}
    for component, factory in factories.items():
        parts[component] = _build(factory, device=device, dtype=dtype, seed=seed)
    for te in spec.text_encoders:
        if te.kind == "t5":
            parts[te.tokenizer] = char_t5_tokenizer(model_max_length=te.max_length)
        else:
            parts[te.tokenizer] = char_clip_tokenizer(model_max_length=te.max_length, pad_token=te.pad_token)
    pipe = spec.pipeline_cls(**parts, **dict(spec.pipeline_kwargs))
    pipe.set_progress_bar_config(disable=True)
    pipe._cachesearch_random_weights = True
    return pipe


def dit_param_counts(name: str) -> dict[str, int]:
    """Parameter counts per component of DiT preset ``name``, from models built on the meta device."""
    counts = {}
    for component, factory in _factories(_DITS[name]).items():
        with torch.device("meta"):
            model = factory()
        counts[component] = sum(p.numel() for p in model.parameters())
    return counts
