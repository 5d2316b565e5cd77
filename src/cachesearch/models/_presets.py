"""Random-weight ``arch:`` presets: the real SD 1.5 and SDXL-base architectures, for latency work.

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

import contextlib
import copy
import math
import threading
from collections.abc import Callable, Iterator, Mapping
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

from cachesearch.models._tokenizer import char_clip_tokenizer

__all__ = ["ARCH_PRESETS", "arch_configs", "arch_param_counts", "build_arch_pipeline"]

Components = Literal["full", "unet"]

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

# openai/clip-vit-large-patch14 text tower (SD 1.x text_encoder, SDXL text_encoder).
_CLIP_L_TEXT: dict[str, Any] = {
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 2,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "projection_dim": 768,
    "vocab_size": 49408,
}

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

# laion/CLIP-ViT-bigG-14 text tower (SDXL text_encoder_2).
_CLIP_BIGG_TEXT: dict[str, Any] = {
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 2,
    "hidden_act": "gelu",
    "hidden_size": 1280,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 5120,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "pad_token_id": 1,
    "projection_dim": 1280,
    "vocab_size": 49408,
}

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

ARCH_PRESETS: tuple[str, ...] = tuple(_ARCHS)
"""Names accepted by :func:`build_arch_pipeline` (also with an ``arch:`` prefix)."""


def _spec(name: str) -> tuple[str, _ArchSpec]:
    if not isinstance(name, str):
        raise TypeError(f"arch preset name must be a str, got {type(name).__name__}")
    key = name.removeprefix("arch:")
    if key not in _ARCHS:
        valid = ", ".join(f"arch:{n}" for n in ARCH_PRESETS)
        raise ValueError(f"unknown arch preset {name!r}; valid presets: {valid}")
    return key, _ARCHS[key]


def arch_configs(name: str) -> dict[str, dict[str, Any]]:
    """Deep copies of the configs of preset ``name``, keyed by pipeline component (``unet``, ``vae``,
    ``text_encoder``[, ``text_encoder_2``], ``scheduler``)."""
    _, spec = _spec(name)
    configs: dict[str, dict[str, Any]] = {"unet": copy.deepcopy(dict(spec.unet))}
    configs["vae"] = copy.deepcopy(dict(spec.vae))
    for te in spec.text_encoders:
        configs[te.component] = copy.deepcopy(dict(te.config))
    configs["scheduler"] = copy.deepcopy(dict(spec.scheduler))
    return configs


# ----------------------------------------------------------------------------------------------------
# Cheap construction: parameters on meta, then allocated on the target device and initialised once
# ----------------------------------------------------------------------------------------------------

_CONSTRUCT_LOCK = threading.Lock()


@contextlib.contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Create every ``nn.Parameter`` on the meta device while buffers are built normally.

    This is the technique of ``accelerate.init_empty_weights(include_buffers=False)``: it patches
    ``nn.Module.register_parameter`` for the duration of the block (process-wide; our own constructions are
    serialised by a lock). The default initialisers then run on meta tensors, i.e. cost nothing.
    """
    original = torch.nn.Module.register_parameter

    def register_parameter(module: torch.nn.Module, name: str, param: torch.nn.Parameter | None) -> None:
        original(module, name, param)
        if param is not None and param.device.type != "meta":
            meta = param.to("meta")
            module._parameters[name] = type(param)(meta, requires_grad=param.requires_grad)

    with _CONSTRUCT_LOCK:
        torch.nn.Module.register_parameter = register_parameter  # type: ignore[method-assign]
        try:
            yield
        finally:
            torch.nn.Module.register_parameter = original  # type: ignore[method-assign]


def _fan_in(param: torch.Tensor) -> int:
    return max(1, param[0].numel())


@torch.no_grad()
def _allocate_(module: torch.nn.Module, *, device: torch.device, dtype: torch.dtype) -> None:
    """Replace every parameter by an uninitialised one on ``device``/``dtype`` (tied parameters stay tied) and
    move buffers there (floating buffers cast to ``dtype``; CLIP's int64 ``position_ids`` stay int64)."""
    replaced: dict[int, torch.nn.Parameter] = {}
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is None:
                continue
            if id(param) not in replaced:
                target = dtype if param.is_floating_point() else param.dtype
                replaced[id(param)] = torch.nn.Parameter(
                    torch.empty(param.shape, device=device, dtype=target), requires_grad=param.requires_grad
                )
            sub._parameters[name] = replaced[id(param)]
        for name, buf in list(sub._buffers.items()):
            if buf is not None:
                target = dtype if buf.is_floating_point() else buf.dtype
                sub._buffers[name] = buf.to(device=device, dtype=target)


@torch.no_grad()
def _init_random_(module: torch.nn.Module, *, seed: int) -> None:
    """Seeded variance-preserving init of every parameter of ``module`` (all on one device).

    Weights (ndim >= 2, fan-in = elements per output row): ``U(-sqrt(3/fan_in), sqrt(3/fan_in))`` (LeCun
    variance, uniform because ``uniform_`` is ~1.5x cheaper than ``normal_`` on CPU); 1-D ``weight`` scales
    (GroupNorm/LayerNorm): 1; biases and other parameters: 0. One generator, parameters in registration order.
    """
    params = list(module.parameters())
    if not params:
        return
    generator = torch.Generator(device=params[0].device).manual_seed(seed)
    seen: set[int] = set()
    for sub_name, sub in module.named_modules():
        for name, param in sub.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            if not param.is_floating_point():
                raise TypeError(f"cannot initialise non-float parameter {sub_name}.{name} ({param.dtype})")
            if param.ndim >= 2:
                bound = math.sqrt(3.0 / _fan_in(param))
                param.uniform_(-bound, bound, generator=generator)
            else:
                param.fill_(1.0 if name == "weight" else 0.0)


def _build(
    factory: Callable[[], torch.nn.Module], *, device: torch.device, dtype: torch.dtype, seed: int
) -> torch.nn.Module:
    if device.type == "meta":
        with torch.device("meta"):
            module = factory()
        _allocate_(module, device=device, dtype=dtype)
    else:
        with _parameters_on_meta():
            module = factory()
        _allocate_(module, device=device, dtype=dtype)
        _init_random_(module, seed=seed)
    module.eval()
    module._cachesearch_random_weights = True
    return module


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
) -> DiffusionPipeline | UNet2DConditionModel:
    """Build preset ``name`` (``"sd15"``/``"sdxl"``, optionally ``"arch:"``-prefixed) with random weights.

    Args:
        name: One of :data:`ARCH_PRESETS`.
        device: Target device. ``"meta"`` builds the structure only (no memory, no init), e.g. for
            :func:`cachesearch.models._cost.module_macs`.
        dtype: Floating dtype of all parameters (float16 is typical on GPU; the SDXL VAE upcasts itself for
            decoding because its config has ``force_upcast=True``, as the real one does).
        components: ``"full"`` for the whole pipeline (UNet, VAE, text encoder(s), generated tokenizer(s),
            scheduler) or ``"unet"`` for the denoiser only.
        seed: Weight seed; the same seed gives the same weights on the same device type. The global RNG
            is not touched.

    Returns:
        A ``StableDiffusionPipeline`` / ``StableDiffusionXLPipeline`` (``components="full"``) or a
        ``UNet2DConditionModel`` (``components="unet"``), in eval mode. The pipeline, and every model in it,
        has ``_cachesearch_random_weights = True``.

    Raises:
        ValueError: unknown preset, ``components`` or non-floating ``dtype``.
    """
    _, spec = _spec(name)
    if components not in ("full", "unet"):
        raise ValueError(f"components must be 'full' or 'unet', got {components!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    dev = torch.device(device)
    unet = _build(_unet_factory(spec), device=dev, dtype=dtype, seed=seed)
    if components == "unet":
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
    allocation). Keys: ``unet``, ``vae``, ``text_encoder`` and, for SDXL, ``text_encoder_2``."""
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
