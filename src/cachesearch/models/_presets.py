"""Random-weight ``arch:`` presets: the real SD 1.5 and SDXL-base architectures, for latency work (the
transformer presets ``arch:flux``, ``arch:sd3`` and ``arch:pixart-sigma`` are in :mod:`._presets_dit`).

The configurations below are the published ``config.json`` files of ``runwayml/stable-diffusion-v1-5`` and
``stabilityai/stable-diffusion-xl-base-1.0`` written out as Python dicts (nothing is downloaded). Weights are
random, so **quality numbers must never be reported for these models**: every pipeline and model built here
carries ``_cachesearch_random_weights = True`` and :func:`cachesearch.models._loaders.load_model` records
``random_weights=True``.

Tokenizers are generated offline (:func:`cachesearch.models._tokenizer.char_clip_tokenizer`): prompts
tokenize to one id per character and are padded to 77 tokens exactly like the real tokenizers, so the text
encoders and cross-attention do the same work as with the real vocabulary.

Construction is cheap: parameters are created on the ``meta`` device (buffers such as CLIP's
``position_ids`` are built normally), then allocated directly on the target device and dtype and filled
once with a seeded variance-preserving init (LeCun uniform for weights, ones for norm scales, zeros for
biases; see :func:`_init_random_`), instead of PyTorch's default init followed by a cast or copy. The init
keeps activations O(1) through the GroupNorm/LayerNorm-normalised residual stacks (measured in fp32 at
256 px, max |activation| of any module: SD 1.5 UNet 24, VAE decoder 41, CLIP-L 16; SDXL UNet 34, bigG 26),
so fp16 runs stay far from overflow (65504) and CPU runs never hit denormals. Each component has its own
generator seeded with ``seed``, so a UNet built with ``components="unet"`` has the same weights as the one
inside ``components="full"`` (on the same device type).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from diffusers import (
    AutoencoderKL,
    DiffusionPipeline,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from cachesearch.models._arch_build import (  # noqa: F401  (_allocate_, _init_random_: re-exported for tests)
    CLIP_BIGG_TEXT,
    CLIP_L_TEXT,
    _allocate_,
    _build,
    _init_random_,
)
from cachesearch.models._presets_denoisers import DENOISER_PRESETS, build_preset_denoiser, preset
from cachesearch.models._presets_dit import DIT_PRESETS, build_dit, dit_configs, dit_param_counts
from cachesearch.models._presets_wan import TINY_WAN, tiny_wan_configs, tiny_wan_pipeline, tiny_wan_transformer
from cachesearch.models._tokenizer import char_clip_tokenizer

__all__ = ["ARCH_PRESETS", "arch_configs", "arch_param_counts", "build_arch_pipeline"]

Components = Literal["full", "denoiser", "unet", "transformer"]

# ----------------------------------------------------------------------------------------------------
# Published configurations
# ----------------------------------------------------------------------------------------------------

_SD15_UNET: dict[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}

_SD_VAE: dict[str, Any] = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

_CLIP_L_TEXT = CLIP_L_TEXT  # openai/clip-vit-large-patch14 text tower, in ._arch_build

# SD 1.5 scheduler/scheduler_config.json (its "clip_sample": false is not a PNDMScheduler argument).
_SD15_SCHEDULER: dict[str, Any] = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}

_SDXL_UNET: dict[str, Any] = {
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "center_input_sample": False,
    "class_embed_type": None,
    "class_embeddings_concat": False,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "cross_attention_dim": 2048,
    "cross_attention_norm": None,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_only_cross_attention": None,
    "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_attention_heads": None,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False,
    "resnet_time_scale_shift": "default",
    "sample_size": 128,
    "time_cond_proj_dim": None,
    "time_embedding_act_fn": None,
    "time_embedding_dim": None,
    "time_embedding_type": "positional",
    "timestep_post_act": None,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "upcast_attention": None,
    "use_linear_projection": True,
}

_SDXL_VAE: dict[str, Any] = {
    **_SD_VAE,
    "force_upcast": True,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
}

_CLIP_BIGG_TEXT = CLIP_BIGG_TEXT  # laion/CLIP-ViT-bigG-14 text tower, in ._arch_build

# SDXL scheduler/scheduler_config.json, keeping the keys EulerDiscreteScheduler accepts (the published file
# also carries DDIM/PNDM leftovers: clip_sample, sample_max_value, set_alpha_to_one, skip_prk_steps).
_SDXL_SCHEDULER: dict[str, Any] = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}


@dataclass(frozen=True)
class _TextEncoderSpec:
    component: str  # pipeline attribute: "text_encoder" / "text_encoder_2"
    tokenizer: str  # matching tokenizer attribute
    model_cls: type[CLIPTextModel] | type[CLIPTextModelWithProjection]
    config: Mapping[str, Any]
    pad_token: str


@dataclass(frozen=True)
class _ArchSpec:
    pipeline_cls: type[DiffusionPipeline]
    unet: Mapping[str, Any]
    vae: Mapping[str, Any]
    text_encoders: tuple[_TextEncoderSpec, ...]
    scheduler_cls: type[PNDMScheduler] | type[EulerDiscreteScheduler]
    scheduler: Mapping[str, Any]
    pipeline_kwargs: Mapping[str, Any]


_ARCHS: dict[str, _ArchSpec] = {
    "sd15": _ArchSpec(
        pipeline_cls=StableDiffusionPipeline,
        unet=_SD15_UNET,
        vae=_SD_VAE,
        text_encoders=(
            _TextEncoderSpec("text_encoder", "tokenizer", CLIPTextModel, _CLIP_L_TEXT, "<|endoftext|>"),
        ),
        scheduler_cls=PNDMScheduler,
        scheduler=_SD15_SCHEDULER,
        pipeline_kwargs={"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False},
    ),
    "sdxl": _ArchSpec(
        pipeline_cls=StableDiffusionXLPipeline,
        unet=_SDXL_UNET,
        vae=_SDXL_VAE,
        text_encoders=(
            _TextEncoderSpec("text_encoder", "tokenizer", CLIPTextModel, _CLIP_L_TEXT, "<|endoftext|>"),
            _TextEncoderSpec(
                "text_encoder_2", "tokenizer_2", CLIPTextModelWithProjection, _CLIP_BIGG_TEXT, "!"
            ),
        ),
        scheduler_cls=EulerDiscreteScheduler,
        scheduler=_SDXL_SCHEDULER,
        pipeline_kwargs={
            "image_encoder": None,
            "feature_extractor": None,
            "force_zeros_for_empty_prompt": True,
            "add_watermarker": False,
        },
    ),
}

ARCH_PRESETS: tuple[str, ...] = tuple(_ARCHS) + DIT_PRESETS + tuple(TINY_WAN) + DENOISER_PRESETS
"""Names accepted by :func:`build_arch_pipeline` (also with an ``arch:`` prefix): the UNets here, the
transformers (FLUX.1-dev, SD3.5-medium, PixArt-Σ) in :mod:`._presets_dit`, the tiny Wan video pipelines in
:mod:`._presets_wan`, and the denoiser-only presets of :mod:`._presets_denoisers` (Wan 2.1/2.2, Qwen-Image,
FLUX.2-dev, HunyuanVideo, LTX-Video, CogVideoX-5B, Z-Image, SANA, HiDream: meta device, for costs)."""


def _key(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"arch preset name must be a str, got {type(name).__name__}")
    key = name.removeprefix("arch:")
    if key not in ARCH_PRESETS:
        valid = ", ".join(f"arch:{n}" for n in ARCH_PRESETS)
        raise ValueError(f"unknown arch preset {name!r}; valid presets: {valid}")
    return key


def _spec(name: str) -> tuple[str, _ArchSpec]:
    key = _key(name)
    return key, _ARCHS[key]


def arch_configs(name: str) -> dict[str, dict[str, Any]]:
    """Deep copies of the configs of preset ``name``, keyed by pipeline component (``unet`` or
    ``transformer``, ``vae``, ``text_encoder``[, ``text_encoder_2``[, ``text_encoder_3``]], ``scheduler``)."""
    if _key(name) in DIT_PRESETS:
        return dit_configs(_key(name))
    if _key(name) in TINY_WAN:
        return tiny_wan_configs()
    if _key(name) in DENOISER_PRESETS:
        return {"transformer": copy.deepcopy(dict(preset(_key(name)).config))}
    _, spec = _spec(name)
    configs: dict[str, dict[str, Any]] = {"unet": copy.deepcopy(dict(spec.unet))}
    configs["vae"] = copy.deepcopy(dict(spec.vae))
    for te in spec.text_encoders:
        configs[te.component] = copy.deepcopy(dict(te.config))
    configs["scheduler"] = copy.deepcopy(dict(spec.scheduler))
    return configs



def _unet_factory(spec: _ArchSpec) -> Callable[[], torch.nn.Module]:
    return lambda: UNet2DConditionModel(**copy.deepcopy(dict(spec.unet)))


def _vae_factory(spec: _ArchSpec) -> Callable[[], torch.nn.Module]:
    return lambda: AutoencoderKL(**copy.deepcopy(dict(spec.vae)))


def _text_factory(te: _TextEncoderSpec) -> Callable[[], torch.nn.Module]:
    return lambda: te.model_cls(CLIPTextConfig(**copy.deepcopy(dict(te.config))))


def build_arch_pipeline(
    name: str,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    components: Components = "full",
    seed: int = 0,
) -> DiffusionPipeline | torch.nn.Module:
    """Build preset ``name`` (``"sd15"``, ``"sdxl"``, ``"flux"``, ``"sd3"``, ``"pixart-sigma"``, optionally
    ``"arch:"``-prefixed) with random weights.

    Args:
        name: One of :data:`ARCH_PRESETS`.
        device: Target device. ``"meta"`` builds the structure only (no memory, no init), e.g. for
            :func:`cachesearch.models._cost.module_macs`.
        dtype: Floating dtype of all parameters (float16 is typical on GPU; the SDXL VAE upcasts itself for
            decoding because its config has ``force_upcast=True``, as the real one does).
        components: ``"full"`` for the whole pipeline (denoiser, VAE, text encoder(s), generated tokenizer(s),
            scheduler) or ``"denoiser"`` for the denoiser only (also ``"unet"`` for the UNet presets and
            ``"transformer"`` for the transformer ones).
        seed: Weight seed; the same seed gives the same weights on the same device type. The global RNG
            is not touched.

    Returns:
        A ``StableDiffusionPipeline`` / ``StableDiffusionXLPipeline`` / ``FluxPipeline`` /
        ``StableDiffusion3Pipeline`` / ``PixArtSigmaPipeline`` (``components="full"``) or its denoiser, in eval
        mode. The pipeline, and every model in it, has ``_cachesearch_random_weights = True``.

    Raises:
        ValueError: unknown preset, ``components`` or non-floating ``dtype``.
    """
    key = _key(name)
    denoiser = "unet" if key in _ARCHS else "transformer"
    if components not in ("full", "denoiser", denoiser):
        raise ValueError(f"components must be 'full', 'denoiser' or {denoiser!r} for arch:{key}, got {components!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    dev = torch.device(device)
    if key in DIT_PRESETS:
        return build_dit(key, device=dev, dtype=dtype, full=components == "full", seed=seed)
    if key in DENOISER_PRESETS:
        if components == "full":
            raise ValueError(
                f"arch:{key} is a denoiser-only preset (the published {preset(key).cls} configuration, for costs: "
                f"`cachesearch blocks --model arch:{key}`); running a {preset(key).pipeline or 'pipeline'} needs its "
                f"real text encoders and VAE: load the model's diffusers folder or cached hub id"
            )
        return build_preset_denoiser(key, device=dev, dtype=dtype)
    if key in TINY_WAN:
        if components == "full":
            return tiny_wan_pipeline(key, seed=seed, device=dev, dtype=dtype)
        return tiny_wan_transformer(seed).to(device=dev, dtype=dtype)
    spec = _ARCHS[key]
    unet = _build(_unet_factory(spec), device=dev, dtype=dtype, seed=seed)
    if components != "full":
        return unet
    parts: dict[str, Any] = {
        "unet": unet,
        "vae": _build(_vae_factory(spec), device=dev, dtype=dtype, seed=seed),
        "scheduler": spec.scheduler_cls(**dict(spec.scheduler)),
    }
    for te in spec.text_encoders:
        parts[te.component] = _build(_text_factory(te), device=dev, dtype=dtype, seed=seed)
        parts[te.tokenizer] = char_clip_tokenizer(
            model_max_length=int(te.config["max_position_embeddings"]), pad_token=te.pad_token
        )
    pipe = spec.pipeline_cls(**parts, **dict(spec.pipeline_kwargs))
    pipe.set_progress_bar_config(disable=True)
    pipe._cachesearch_random_weights = True
    return pipe


def arch_param_counts(name: str) -> dict[str, int]:
    """Parameter counts per component of preset ``name``, from models built on the meta device (no
    allocation). Keys: ``unet`` (``transformer``), ``vae``, ``text_encoder`` and the further text encoders."""
    if _key(name) in DIT_PRESETS:
        return dit_param_counts(_key(name))
    if _key(name) in DENOISER_PRESETS:
        model = build_preset_denoiser(_key(name))
        return {"transformer": sum(p.numel() for p in model.parameters())}
    if _key(name) in TINY_WAN:
        pipe = tiny_wan_pipeline(_key(name))
        return {c: sum(p.numel() for p in getattr(pipe, c).parameters())
                for c in ("transformer", "transformer_2", "vae", "text_encoder") if getattr(pipe, c) is not None}
    _, spec = _spec(name)
    factories: dict[str, Callable[[], torch.nn.Module]] = {
        "unet": _unet_factory(spec),
        "vae": _vae_factory(spec),
    }
    for te in spec.text_encoders:
        factories[te.component] = _text_factory(te)
    counts: dict[str, int] = {}
    for component, factory in factories.items():
        with torch.device("meta"):
            model = factory()
        counts[component] = sum(p.numel() for p in model.parameters())
    return counts
