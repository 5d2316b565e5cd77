"""Tiny, seeded transformer denoisers (FLUX, SD3, PixArt) and their pipelines, for tests. Test-only.

Real diffusers classes at toy sizes (2 double + 2 single FLUX blocks, 2 SD3 joint blocks with one dual-attention
layer, 2 PixArt blocks; 16-32 channels), default random initialisation under a fixed seed, float32 on CPU.
The pipelines use tiny CLIP and T5 text encoders and the offline character tokenizers of
:mod:`cachesearch.models._tokenizer`, so nothing is downloaded.

:func:`flow_loop` runs a bare transformer once per step in a hand-written flow-matching Euler loop (what a
custom sampler does), for the hooks that need no pipeline; :class:`diffusers_hook` applies one of diffusers' own
cache hooks (the oracles cachesearch's policies are compared with); :func:`watch_linear` sees where a block's
leaf computes, to check that a skipped block really does not run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
from diffusers.hooks import HookRegistry
from diffusers.hooks.hooks import CacheContext, _set_cache_context
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel

from cachesearch.models._tokenizer import char_clip_tokenizer, char_t5_tokenizer

__all__ = [
    "FAMILIES",
    "diffusers_hook",
    "dit_inputs",
    "flow_loop",
    "tiny_dit_pipeline",
    "tiny_guided_flux_pipeline",
    "tiny_transformer",
    "watch_linear",
]

FAMILIES = ("flux", "sd3", "pixart")
TEXT = 6  # text tokens of the bare-transformer inputs
T5_DIM = 32


def tiny_transformer(family: str, seed: int = 0) -> torch.nn.Module:
    """A tiny random transformer of ``family`` (eval mode); the caller's global RNG is untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if family == "flux":
            model = FluxTransformer2DModel(
                patch_size=1, in_channels=4, num_layers=2, num_single_layers=2, attention_head_dim=8,
                num_attention_heads=2, joint_attention_dim=T5_DIM, pooled_projection_dim=16, axes_dims_rope=(2, 2, 4),
            )
        elif family == "sd3":
            model = SD3Transformer2DModel(
                sample_size=8, patch_size=2, in_channels=4, num_layers=2, attention_head_dim=8, num_attention_heads=2,
                joint_attention_dim=T5_DIM, caption_projection_dim=16, pooled_projection_dim=32, out_channels=4,
                pos_embed_max_size=16, dual_attention_layers=(0,), qk_norm="rms_norm",
            )
        elif family == "pixart":
            model = PixArtTransformer2DModel(
                sample_size=8, num_layers=2, patch_size=2, attention_head_dim=8, num_attention_heads=2,
                caption_channels=T5_DIM, in_channels=4, cross_attention_dim=16, out_channels=8, attention_bias=True,
                activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
                norm_elementwise_affine=False, norm_eps=1e-6,
            )
        else:
            raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    return model.eval()


def dit_inputs(family: str, batch: int = 1, seed: int = 0) -> dict[str, Any]:
    """Seeded conditioning inputs and initial latents (``hidden_states``) of one call of a tiny transformer."""
    g = torch.Generator().manual_seed(seed)
    if family == "flux":
        tokens = 16  # 4 x 4 packed latents
        return {"hidden_states": torch.randn(batch, tokens, 4, generator=g),
                "encoder_hidden_states": torch.randn(batch, TEXT, T5_DIM, generator=g),
                "pooled_projections": torch.randn(batch, 16, generator=g),
                "img_ids": torch.zeros(tokens, 3), "txt_ids": torch.zeros(TEXT, 3)}
    if family == "sd3":
        return {"hidden_states": torch.randn(batch, 4, 8, 8, generator=g),
                "encoder_hidden_states": torch.randn(batch, TEXT, T5_DIM, generator=g),
                "pooled_projections": torch.randn(batch, 32, generator=g)}
    return {"hidden_states": torch.randn(batch, 4, 8, 8, generator=g),
            "encoder_hidden_states": torch.randn(batch, TEXT, T5_DIM, generator=g),
            "added_cond_kwargs": {"resolution": None, "aspect_ratio": None}}


def flow_loop(model: torch.nn.Module, family: str, steps: int, *, seed: int = 0, context: bool = False,
              batch: int = 1) -> torch.Tensor:
    """Flow-matching Euler from noise with ``steps`` calls of ``model`` (one per step); the final latents.

    ``context=True`` sets diffusers' cache context ``"cond"`` around each call (``model.cache_context``), which
    its stateful hooks (TaylorSeer) need outside a pipeline that sets one.
    """
    inputs = dit_inputs(family, batch, seed)
    x = inputs.pop("hidden_states")
    sigmas = torch.linspace(1.0, 0.0, steps + 1)
    with torch.no_grad():
        for s in range(steps):
            t = sigmas[s].expand(batch) * (1.0 if family == "flux" else 1000.0)
            if context:  # what CacheMixin.cache_context does (SD3 and PixArt transformers have no CacheMixin)
                _set_cache_context(model, CacheContext("cond"))
                try:
                    out = model(hidden_states=x, timestep=t, return_dict=False, **inputs)[0]
                finally:
                    _set_cache_context(model, None)
            else:
                out = model(hidden_states=x, timestep=t, return_dict=False, **inputs)[0]
            v = out[:, :4] if family == "pixart" else out  # PixArt also predicts a variance
            x = x + (sigmas[s + 1] - sigmas[s]) * v
    return x


def _clip(hidden: int, projection: bool, seed: int) -> CLIPTextModel:
    config = CLIPTextConfig(bos_token_id=0, eos_token_id=2, pad_token_id=1, hidden_size=hidden, intermediate_size=37,
                            layer_norm_eps=1e-5, num_attention_heads=4, num_hidden_layers=2,
                            max_position_embeddings=77, vocab_size=1000, projection_dim=hidden, hidden_act="gelu")
    torch.manual_seed(seed)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def _t5(seed: int) -> T5EncoderModel:
    torch.manual_seed(seed)
    config = T5Config(vocab_size=128, d_model=T5_DIM, d_ff=37, d_kv=8, num_layers=2, num_heads=4,
                      relative_attention_num_buckets=8, feed_forward_proj="gated-gelu", dropout_rate=0.0)
    return T5EncoderModel(config).eval()


def _vae(latent_channels: int, seed: int, shift: float | None = None) -> AutoencoderKL:
    """A two-stage VAE; FLUX's and SD3's decode with a ``shift_factor`` and no quant convs, as theirs do."""
    torch.manual_seed(seed)
    return AutoencoderKL(block_out_channels=(8, 16), in_channels=3, out_channels=3,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         latent_channels=latent_channels, layers_per_block=1, norm_num_groups=4, sample_size=16,
                         use_quant_conv=shift is None, use_post_quant_conv=shift is None, shift_factor=shift,
                         scaling_factor=1.5035 if shift is not None else 0.18215).eval()


def tiny_dit_pipeline(family: str, seed: int = 0) -> Any:
    """A tiny random ``FluxPipeline`` / ``StableDiffusion3Pipeline`` / ``PixArtSigmaPipeline`` on CPU.

    The VAE has two stages (scale factor 2): ``height=width=16`` gives 8×8 latents (FLUX: 16 packed tokens).
    Call with ``max_sequence_length=16``; PixArt also with ``clean_caption=False, use_resolution_binning=False``
    (see :func:`pipeline_kwargs`).
    """
    with torch.random.fork_rng(devices=[]):
        transformer = tiny_transformer(family, seed)
        if family == "flux":
            pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=_vae(1, seed, 0.0609),
                                text_encoder=_clip(16, False, seed), tokenizer=char_clip_tokenizer(),
                                text_encoder_2=_t5(seed), tokenizer_2=char_t5_tokenizer(model_max_length=16),
                                transformer=transformer)
        elif family == "sd3":
            pipe = StableDiffusion3Pipeline(
                scheduler=FlowMatchEulerDiscreteScheduler(), vae=_vae(4, seed, 0.0609),
                text_encoder=_clip(16, True, seed), tokenizer=char_clip_tokenizer(),
                text_encoder_2=_clip(16, True, seed + 1), tokenizer_2=char_clip_tokenizer(pad_token="!"),
                text_encoder_3=_t5(seed), tokenizer_3=char_t5_tokenizer(model_max_length=16),
                transformer=transformer)
        else:
            pipe = PixArtSigmaPipeline(tokenizer=char_t5_tokenizer(model_max_length=16), text_encoder=_t5(seed),
                                       vae=_vae(4, seed), transformer=transformer,
                                       scheduler=DPMSolverMultistepScheduler())
    pipe.set_progress_bar_config(disable=True)
    pipe._cachesearch_random_weights = True
    return pipe


def tiny_guided_flux_pipeline(seed: int = 0) -> Any:
    """The tiny FLUX pipeline as the embedded shapes-flux model is built: ``EmbeddedFluxPipeline`` (16 text
    tokens) with a ``GuidedFluxTransformer2DModel`` (classifier-free guidance batched inside its one call per
    step: the blocks see ``[uncond; cond]`` when ``guidance_scale > 1``), random learned null conditioning."""
    from cachesearch.embedded.shapes_flux._guided import GuidedFluxTransformer2DModel
    from cachesearch.embedded.shapes_flux._pipeline import EmbeddedFluxPipeline, mark_text_tokens

    base = tiny_dit_pipeline("flux", seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = GuidedFluxTransformer2DModel(
            patch_size=1, in_channels=4, num_layers=2, num_single_layers=2, attention_head_dim=8,
            num_attention_heads=2, joint_attention_dim=T5_DIM, pooled_projection_dim=16, axes_dims_rope=(2, 2, 4),
            null_text_tokens=16).eval()
        with torch.no_grad():
            transformer.null_text.normal_()
            transformer.null_pooled.normal_()
    components = {k: v for k, v in base.components.items() if k != "transformer"}
    pipe = EmbeddedFluxPipeline(transformer=transformer, **components)
    mark_text_tokens(pipe)  # MACs at the 16 text tokens it runs with, as the embedded loader does
    pipe.set_progress_bar_config(disable=True)
    pipe._cachesearch_random_weights = True
    return pipe


def pipeline_kwargs(family: str) -> dict[str, Any]:
    """Keyword arguments every tiny-pipeline call needs (size, short text, no caption cleaning)."""
    kw: dict[str, Any] = {"height": 16, "width": 16, "max_sequence_length": 16, "output_type": "latent"}
    if family == "pixart":
        kw.update(clean_caption=False, use_resolution_binning=False)
    return kw


class diffusers_hook:  # noqa: N801 - used as a context manager, like a function
    """Apply one of diffusers' cache hooks to ``model`` (not every transformer has ``enable_cache``); removed on
    exit, its state reset first, and checked gone."""

    def __init__(self, model: torch.nn.Module, apply: Any, config: Any, name: str) -> None:
        self.model, self.apply, self.config, self.name = model, apply, config, name

    def __enter__(self) -> None:
        self.apply(self.model, self.config)

    def __exit__(self, *exc: Any) -> None:
        registry = HookRegistry.check_if_exists_or_initialize(self.model)
        registry.reset_stateful_hooks(recurse=True)
        registry.remove_hook(self.name, recurse=True)
        assert not any(getattr(getattr(m, "_diffusers_hook", None), "hooks", None) for m in self.model.modules())


def watch_linear(modules: Mapping[str, torch.nn.Module], seen: Callable[[str], None]) -> Callable[..., torch.Tensor]:
    """``F.linear`` that also calls ``seen(name)`` whenever the first ``Linear`` of ``modules[name]`` computes: where
    the leaf computes, so a hook on a wrapped module (called whether it reuses or not) cannot be fooled. Install it
    with ``monkeypatch.setattr(torch.nn.functional, "linear", ...)``."""
    linear = torch.nn.functional.linear
    weights = {id(next(m for m in module.modules() if isinstance(m, torch.nn.Linear)).weight): name
               for name, module in modules.items()}

    def watching(x: torch.Tensor, weight: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        name = weights.get(id(weight))
        if name is not None:
            seen(name)
        return linear(x, weight, *args, **kwargs)

    return watching
