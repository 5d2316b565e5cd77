"""Tests of the random-weight ``arch:`` presets, the generated tokenizer and the tiny test pipelines.

The SD 1.5 / SDXL models are only ever built on the meta device here, except one ``slow`` test that builds
the SD 1.5 UNet on CPU (3.4 GB) and runs it once on a small latent.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from cachesearch.models._presets import (
    ARCH_PRESETS,
    _build,
    arch_configs,
    arch_param_counts,
    build_arch_pipeline,
)
from cachesearch.models._tokenizer import char_clip_tokenizer, char_vocab_size
from tests._tiny import tiny_sd_pipeline, tiny_unet_config

# Published parameter counts (diffusers/transformers, runwayml/stable-diffusion-v1-5 and
# stabilityai/stable-diffusion-xl-base-1.0).
SD15_COUNTS = {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}
SDXL_COUNTS = {
    "unet": 2_567_463_684,
    "vae": 83_653_863,
    "text_encoder": 123_060_480,
    "text_encoder_2": 694_659_840,
}


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)
    except OSError:
        return False
    return True


def _peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


@pytest.mark.parametrize(("name", "expected"), [("sd15", SD15_COUNTS), ("sdxl", SDXL_COUNTS)])
def test_param_counts_match_published_without_allocating(name: str, expected: dict[str, int]) -> None:
    if not _reset_peak_rss():
        pytest.skip("cannot reset the peak RSS on this OS")
    before = _peak_rss_bytes()
    counts = arch_param_counts(name)
    grown = _peak_rss_bytes() - before
    assert counts == expected
    assert grown < 300 * 2**20, f"peak RSS grew by {grown / 2**20:.0f} MiB: parameters were allocated"


def test_arch_prefix_and_unknown_names() -> None:
    assert ARCH_PRESETS[:7] == ("sd15", "sdxl", "flux", "sd3", "pixart-sigma", "wan2.1-tiny", "wan2.2-a14b-tiny")
    assert {"wan2.1-1.3b", "wan2.2-a14b", "flux2-dev", "hidream"} <= set(ARCH_PRESETS)  # denoiser-only presets
    assert arch_param_counts("arch:sd15") == SD15_COUNTS
    with pytest.raises(ValueError, match=r"arch:sd15, arch:sdxl, arch:flux, arch:sd3, arch:pixart-sigma, "
                                         r"arch:wan2.1-tiny, arch:wan2.2-a14b-tiny, arch:wan2.1-1.3b"):
        arch_param_counts("sd4")
    with pytest.raises(ValueError, match="unknown arch preset"):
        build_arch_pipeline("arch:flux2", device="meta")


def test_configs_are_copies() -> None:
    configs = arch_configs("sd15")
    assert set(configs) == {"unet", "vae", "text_encoder", "scheduler"}
    assert configs["unet"]["block_out_channels"] == [320, 640, 1280, 1280]
    configs["unet"]["block_out_channels"].append(1)
    assert arch_configs("sd15")["unet"]["block_out_channels"] == [320, 640, 1280, 1280]
    assert set(arch_configs("sdxl")) == {"unet", "vae", "text_encoder", "text_encoder_2", "scheduler"}


def test_sd15_meta_pipeline_structure() -> None:
    pipe = build_arch_pipeline("sd15", device="meta")
    assert isinstance(pipe, StableDiffusionPipeline)
    assert pipe._cachesearch_random_weights is True
    for component in (pipe.unet, pipe.vae, pipe.text_encoder):
        assert component._cachesearch_random_weights is True
        assert all(p.device.type == "meta" for p in component.parameters())
    assert isinstance(pipe.unet, UNet2DConditionModel) and isinstance(pipe.vae, AutoencoderKL)
    assert type(pipe.text_encoder) is CLIPTextModel
    assert pipe.safety_checker is None
    sched = pipe.scheduler
    assert isinstance(sched, PNDMScheduler)
    assert sched.config.beta_start == 0.00085 and sched.config.beta_end == 0.012
    assert sched.config.beta_schedule == "scaled_linear" and sched.config.skip_prk_steps is True
    assert sched.config.steps_offset == 1 and sched.config.set_alpha_to_one is False
    cond, uncond = pipe.encode_prompt(
        "a photo of a cat",
        device=torch.device("meta"),
        num_images_per_prompt=1,
        do_classifier_free_guidance=True,
    )
    assert cond.shape == uncond.shape == (1, 77, 768)


def test_sdxl_meta_pipeline_structure() -> None:
    pipe = build_arch_pipeline("sdxl", device="meta", dtype=torch.float16)
    assert isinstance(pipe, StableDiffusionXLPipeline)
    assert pipe._cachesearch_random_weights is True
    assert type(pipe.text_encoder) is CLIPTextModel
    assert type(pipe.text_encoder_2) is CLIPTextModelWithProjection
    assert pipe.unet.dtype == torch.float16 and pipe.vae.config.force_upcast is True
    assert isinstance(pipe.scheduler, EulerDiscreteScheduler)
    assert pipe.scheduler.config.timestep_spacing == "leading"
    assert pipe.tokenizer_2.pad_token == "!" and pipe.tokenizer.pad_token == "<|endoftext|>"
    cond, uncond, pooled, uncond_pooled = pipe.encode_prompt(
        "a photo of a cat",
        device=torch.device("meta"),
        num_images_per_prompt=1,
        do_classifier_free_guidance=True,
    )
    assert cond.shape == uncond.shape == (1, 77, 2048)
    assert pooled.shape == uncond_pooled.shape == (1, 1280)


def test_unet_component_and_argument_errors() -> None:
    unet = build_arch_pipeline("sd15", device="meta", components="unet", dtype=torch.bfloat16)
    assert isinstance(unet, UNet2DConditionModel)
    assert unet._cachesearch_random_weights is True and unet.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="components"):
        build_arch_pipeline("sd15", device="meta", components="vae")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="components must be 'full', 'denoiser' or 'unet' for arch:sd15"):
        build_arch_pipeline("sd15", device="meta", components="transformer")
    assert isinstance(build_arch_pipeline("sd15", device="meta", components="denoiser"), UNet2DConditionModel)
    with pytest.raises(ValueError, match="dtype"):
        build_arch_pipeline("sd15", device="meta", dtype=torch.int8)


def _small_clip() -> CLIPTextModel:
    return CLIPTextModel(
        CLIPTextConfig(
            hidden_size=64,
            intermediate_size=128,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=600,
            bos_token_id=0,
            eos_token_id=2,
            pad_token_id=1,
        )
    )


def test_materialized_init_is_seeded_buffers_intact_and_rng_untouched() -> None:
    state = torch.random.get_rng_state()
    cpu = torch.device("cpu")
    a = _build(_small_clip, device=cpu, dtype=torch.float32, seed=0)
    b = _build(_small_clip, device=cpu, dtype=torch.float32, seed=0)
    c = _build(_small_clip, device=cpu, dtype=torch.float32, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), name
    tower_a, tower_c = getattr(a, "text_model", a), getattr(c, "text_model", c)  # transformers 4 / 5
    assert not torch.equal(tower_a.encoder.layers[0].mlp.fc1.weight, tower_c.encoder.layers[0].mlp.fc1.weight)
    position_ids = tower_a.embeddings.position_ids
    assert position_ids.dtype == torch.int64 and torch.equal(position_ids[0], torch.arange(77))
    fc1 = tower_a.encoder.layers[0].mlp.fc1
    assert abs(fc1.weight.std().item() - 1 / math.sqrt(64)) < 0.1 / math.sqrt(64)
    assert torch.all(fc1.bias == 0)
    assert torch.all(tower_a.final_layer_norm.weight == 1)
    assert a._cachesearch_random_weights is True and not a.training


def test_materialized_unet_is_finite_in_fp32_fp16_bf16() -> None:
    config = tiny_unet_config(3)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        unet = _build(lambda: UNet2DConditionModel(**config), device=torch.device("cpu"), dtype=dtype, seed=0)
        assert all(p.dtype == dtype for p in unet.parameters())
        x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0)).to(dtype)
        ctx = torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(1)).to(dtype)
        with torch.no_grad():
            out = unet(x, 10, ctx).sample
        assert torch.isfinite(out).all()
        assert 0.05 < out.float().std().item() < 20


@pytest.mark.slow
def test_sd15_unet_real_weights_finite_on_cpu() -> None:
    unet = build_arch_pipeline("sd15", components="unet")
    assert unet._cachesearch_random_weights is True
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 16, 16, generator=g)
    ctx = torch.randn(1, 77, 768, generator=g)
    with torch.no_grad():
        out = unet(x, 500, ctx).sample
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert 0.05 < out.std().item() < 20


def test_char_tokenizer_pads_like_clip() -> None:
    tok = char_clip_tokenizer()
    assert len(tok) == char_vocab_size() == 514
    assert tok.model_max_length == 77
    ids = tok("A red cat", padding="max_length", max_length=77, truncation=True).input_ids
    assert len(ids) == 77 and ids[0] == tok.bos_token_id
    assert tok.eos_token_id == max(ids) == 513  # CLIP pools at input_ids.argmax(-1)
    assert ids.index(tok.eos_token_id) == 1 + len("aredcat")  # one id per character, spaces dropped
    assert tok.decode(ids, skip_special_tokens=True) == "a red cat"
    long_ids = tok("x" * 500, padding="max_length", max_length=77, truncation=True).input_ids
    assert len(long_ids) == 77 and long_ids[-1] == tok.eos_token_id
    tok2 = char_clip_tokenizer(pad_token="!")
    assert tok2("hi", padding="max_length", max_length=77).input_ids[-1] == tok2.convert_tokens_to_ids("!")
    with pytest.raises(ValueError, match="pad_token"):
        char_clip_tokenizer(pad_token="<pad>")


def test_char_tokenizer_saves_and_reloads(tmp_path: Path) -> None:
    from transformers import CLIPTokenizer

    tok = char_clip_tokenizer()
    tok.save_pretrained(tmp_path)
    again = CLIPTokenizer.from_pretrained(tmp_path, local_files_only=True)
    text = "a blue square, 3 times!"
    assert again(text).input_ids == tok(text).input_ids


@pytest.mark.parametrize("blocks", [2, 3, 4])
def test_tiny_pipeline_runs_and_is_seeded(blocks: int) -> None:
    pipe = tiny_sd_pipeline(blocks=blocks)
    again = tiny_sd_pipeline(blocks=blocks)
    assert len(pipe.unet.down_blocks) == len(pipe.unet.up_blocks) == blocks
    assert pipe._cachesearch_random_weights is True and pipe.safety_checker is None
    for p, q in zip(pipe.unet.parameters(), again.unet.parameters(), strict=True):
        assert torch.equal(p, q)
    kwargs = {"num_inference_steps": 2, "height": 32, "width": 32, "output_type": "np"}
    a = pipe("a red cat", generator=torch.Generator().manual_seed(0), **kwargs).images
    b = again("a red cat", generator=torch.Generator().manual_seed(0), **kwargs).images
    assert a.shape == (1, 32, 32, 3) and (a == b).all()


def test_tiny_pipeline_options() -> None:
    assert isinstance(tiny_sd_pipeline(scheduler="euler").scheduler, EulerDiscreteScheduler)
    assert isinstance(tiny_sd_pipeline(scheduler="pndm").scheduler, PNDMScheduler)
    with pytest.raises(ValueError, match="blocks"):
        tiny_sd_pipeline(blocks=5)
    with pytest.raises(ValueError, match="scheduler"):
        tiny_sd_pipeline(scheduler="lms")


# -- transformer presets (FLUX.1-dev, SD3.5-medium, PixArt-Sigma), on meta only ------------------------------
DIT_COUNTS = {
    "flux": {"transformer": 11_901_408_320, "vae": 83_819_683, "text_encoder": 123_060_480,
             "text_encoder_2": 4_762_310_656},
    "sd3": {"transformer": 2_243_171_520, "vae": 83_819_683, "text_encoder": 123_650_304,
            "text_encoder_2": 694_659_840, "text_encoder_3": 4_762_310_656},
    "pixart-sigma": {"transformer": 610_856_096, "vae": 83_653_863, "text_encoder": 4_762_310_656},
}
DIT_PIPELINES = {"flux": ("FluxPipeline", "FlowMatchEulerDiscreteScheduler", 16),
                 "sd3": ("StableDiffusion3Pipeline", "FlowMatchEulerDiscreteScheduler", 16),
                 "pixart-sigma": ("PixArtSigmaPipeline", "DPMSolverMultistepScheduler", 4)}


@pytest.mark.parametrize("name", sorted(DIT_COUNTS))
def test_dit_presets_are_the_published_architectures_built_on_meta(name: str) -> None:
    from cachesearch.models import load_model

    assert arch_param_counts(f"arch:{name}") == DIT_COUNTS[name]
    pipe_cls, scheduler_cls, latent_channels = DIT_PIPELINES[name]
    loaded = load_model(f"arch:{name}", device="meta")
    pipe = loaded.pipe
    assert type(pipe).__name__ == pipe_cls and type(pipe.scheduler).__name__ == scheduler_cls
    assert loaded.random_weights is True and loaded.family == name.split("-")[0]
    assert loaded.denoiser is pipe.transformer and pipe._cachesearch_random_weights is True
    for component in DIT_COUNTS[name]:
        module = getattr(pipe, component)
        assert module._cachesearch_random_weights is True
        assert all(p.device.type == "meta" for p in module.parameters())
    assert pipe.vae.config.latent_channels == latent_channels
    t5 = pipe.tokenizer if name == "pixart-sigma" else getattr(pipe, "tokenizer_2" if name == "flux" else "tokenizer_3")
    ids = t5("a cat", padding="max_length", max_length=t5.model_max_length, truncation=True).input_ids
    assert len(ids) == {"flux": 512, "sd3": 256, "pixart-sigma": 300}[name]
    assert max(ids) < pipe.text_encoder.config.vocab_size if name == "pixart-sigma" else True
    configs = arch_configs(name)
    assert set(configs) == {*DIT_COUNTS[name], "scheduler"}
    configs["transformer"]["num_attention_heads"] = 1
    assert arch_configs(name)["transformer"]["num_attention_heads"] != 1


def test_dit_preset_components() -> None:
    model = build_arch_pipeline("arch:flux", device="meta", components="transformer", dtype=torch.bfloat16)
    assert type(model).__name__ == "FluxTransformer2DModel" and model.dtype == torch.bfloat16
    assert model.config.num_layers == 19 and model.config.num_single_layers == 38 and model.config.guidance_embeds
    with pytest.raises(ValueError, match="components must be 'full', 'denoiser' or 'transformer' for arch:sd3"):
        build_arch_pipeline("sd3", device="meta", components="unet")
