"""The embedded FLUX-architecture model ``embedded:shapes-flux``: package, shipped pipeline, gate.

Its trainer: tests/training/test_shapes_flux.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cachesearch.embedded import EMBEDDED_PACKAGES, embedded_package, shapes_flux


def test_registered_as_an_embedded_model_that_shares_the_scenes_data() -> None:
    from cachesearch.embedded import scenes

    assert EMBEDDED_PACKAGES["shapes-flux"] == "cachesearch.embedded.shapes_flux"
    assert embedded_package("embedded:shapes-flux") is shapes_flux
    assert shapes_flux.check is scenes.check and shapes_flux.all_captions is scenes.all_captions


def test_shipped_weights_are_small_and_a_complete_flux_folder() -> None:
    folder = shapes_flux.pipeline_path()
    files = list(folder.rglob("*.safetensors"))
    assert {f.parent.name for f in files} == {"transformer", "vae", "text_encoder", "text_encoder_2"}
    assert sum(f.stat().st_size for f in files) <= 20_000_000
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "FluxPipeline"


@pytest.fixture(scope="module")
def pipe():
    return shapes_flux.load_pipeline()


def test_pipeline_is_flux_with_the_embedded_defaults(pipe) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    from cachesearch.adapters import adapter_for

    assert isinstance(pipe, FluxPipeline) and isinstance(pipe.transformer, FluxTransformer2DModel)
    assert isinstance(pipe.scheduler, FlowMatchEulerDiscreteScheduler)
    # the shipped folder samples with the trainer's scheduler (shift chosen on evaluation set 1)
    from cachesearch.embedded.shapes_flux._components import scheduler_config

    assert {k: pipe.scheduler.config[k] for k in scheduler_config()} == scheduler_config()
    assert not pipe.transformer.config.guidance_embeds
    assert pipe.default_sample_size == 16
    assert adapter_for(pipe.transformer).default_size(pipe) == (64, 64)
    tok = pipe.tokenizer_2
    longest = max((c.text() for c in shapes_flux.all_captions()), key=lambda t: len(t.split()))
    assert len(tok(longest).input_ids) <= 16


def test_diffusers_alone_loads_the_folder_and_gives_the_unguided_image(pipe) -> None:
    from diffusers import FluxPipeline, FluxTransformer2DModel

    from cachesearch.embedded.shapes_flux._guided import GuidedFluxTransformer2DModel

    plain = FluxPipeline.from_pretrained(str(shapes_flux.pipeline_path()), local_files_only=True)
    plain.set_progress_bar_config(disable=True)
    assert type(plain.transformer) is FluxTransformer2DModel
    assert isinstance(pipe.transformer, GuidedFluxTransformer2DModel)
    prompt = "a red circle and a blue square on a green background"

    def run(p, **kw) -> np.ndarray:
        return p(prompt, num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np",
                 **kw).images[0]

    guided = run(pipe)  # default guidance 3.5: CFG inside the transformer's call
    assert guided.shape == (64, 64, 3) and np.isfinite(guided).all()
    unguided = run(pipe, guidance_scale=1.0)
    np.testing.assert_array_equal(unguided, run(plain, height=64, width=64, max_sequence_length=16))
    assert not np.array_equal(guided, unguided)


def test_guided_transformer_runs_cfg_as_one_batched_call() -> None:
    from diffusers import FluxTransformer2DModel

    from cachesearch.adapters import adapter_for
    from cachesearch.embedded.shapes_flux._guided import GuidedFluxTransformer2DModel

    torch.manual_seed(0)
    model = GuidedFluxTransformer2DModel(in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=8,
                                         num_attention_heads=2, joint_attention_dim=8, pooled_projection_dim=6,
                                         axes_dims_rope=(2, 2, 4), null_text_tokens=3).eval()
    with torch.no_grad():
        model.null_text.normal_()
        model.null_pooled.normal_()
    g = torch.Generator().manual_seed(1)
    x, text = torch.randn(2, 4, 4, generator=g), torch.randn(2, 3, 8, generator=g)
    pooled = torch.randn(2, 6, generator=g)
    kw = {"timestep": torch.tensor([0.5, 0.5]), "img_ids": torch.zeros(4, 3), "txt_ids": torch.zeros(3, 3),
          "return_dict": False}
    batches = []
    model.transformer_blocks[0].register_forward_hook(
        lambda m, a, kw_, o: batches.append(kw_["hidden_states"].shape[0]), with_kwargs=True)
    model.cfg_scale = 3.0
    with torch.no_grad():
        guided = model(x, text, pooled, **kw)[0]
        plain = FluxTransformer2DModel.forward
        cond = plain(model, x, text, pooled, **kw)[0]
        uncond = plain(model, x, model.null_text.expand(2, -1, -1), model.null_pooled.expand(2, -1), **kw)[0]
    assert batches[0] == 4  # [null; cond] in one call
    torch.testing.assert_close(guided, uncond + 3.0 * (cond - uncond), rtol=1e-5, atol=1e-5)

    class Pipe:
        transformer = model

    assert adapter_for(model).uses_cfg(Pipe(), 3.0) and not adapter_for(model).uses_cfg(Pipe(), 1.0)


def test_mac_counts_use_the_pipelines_16_text_tokens(pipe) -> None:
    from cachesearch.adapters._dit import TEXT_TOKENS_ATTR
    from cachesearch.models._cost import denoiser_costs

    assert getattr(pipe.transformer, TEXT_TOKENS_ATTR) == 16
    macs16, _ = denoiser_costs(pipe.transformer, height=16, width=16)
    replica = type(pipe.transformer).from_config(dict(pipe.transformer.config))
    macs512, _ = denoiser_costs(replica, height=16, width=16)
    attn, ff = "transformer_blocks.0.attn", "transformer_blocks.0.ff"
    assert macs16[ff] == macs512[ff]  # the image stream's MLP: 64 tokens either way
    assert macs512[attn] > 6 * macs16[attn]  # joint attention over 64 + 512 vs 64 + 16 tokens


def test_the_evaluator_costs_blocks_at_the_reference_size(pipe) -> None:
    from cachesearch.evaluate import EvalConfig, Evaluator
    from cachesearch.models._cost import denoiser_costs
    from cachesearch.models._loaders import LoadedModel

    model = LoadedModel(pipe=pipe, denoiser=pipe.transformer, source="embedded:shapes-flux", family="flux",
                        random_weights=False)
    ev = Evaluator(EvalConfig(model="embedded:shapes-flux", n_train=1, n_heldout=1), model=model)
    macs, _ = denoiser_costs(pipe.transformer, height=16, width=16)  # 64 px / VAE factor 4
    assert ev.height == 64 and ev.space.get("transformer_blocks.0.attn").macs == macs["transformer_blocks.0.attn"]


def test_held_out_images_have_the_right_colors(pipe) -> None:
    from cachesearch.embedded.shapes_flux._gate import quality_gate

    res = quality_gate(pipe, n=8, seed=0)
    assert res["model"] == "shapes-flux" and res["steps"] == shapes_flux.DEFAULT_STEPS and res["n"] == 8
    assert res["scheduler_shift"] == pipe.scheduler.config.shift
    # floors under the shipped weights' accuracy on these 8 pairs (0.875 / 1.0; 200 pairs:
    # artifacts/embedded-shapes-flux/quality_gate.json), so a broken pipeline, guidance or tokenizer fails here
    assert res["fg_acc"] >= 0.5 and res["bg_acc"] >= 0.875, res
