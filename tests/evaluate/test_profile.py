"""Block-change profiler: values, shape, files, and the Block-Caching schedule built from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import cachesearch as cs
from cachesearch.embedded import shapes
from cachesearch.evaluate import EvalConfig, Evaluator, load_profile, profile_blocks, profile_id, save_profile
from cachesearch.models._loaders import load_model
from cachesearch.schedule import BlockKind, BlockProfile, ScheduleError

EMBEDDED_WEIGHTS = shapes.pipeline_path() / "unet" / "diffusion_pytorch_model.safetensors"
STEPS = 6


@pytest.fixture(scope="module")
def ev(tmp_path_factory: pytest.TempPathFactory) -> Evaluator:
    if not EMBEDDED_WEIGHTS.is_file():
        pytest.skip("embedded weights are still being trained (file absent)")
    cache = tmp_path_factory.mktemp("refs")
    config = EvalConfig(num_inference_steps=STEPS, n_train=2, n_heldout=1, batch_size=2, cache_dir=str(cache))
    return Evaluator(config, model=load_model("embedded"))


@pytest.fixture(scope="module")
def stage_profile(ev: Evaluator) -> BlockProfile:
    return profile_blocks(ev, granularity="stage")


def test_stage_profile_shape_and_values(ev: Evaluator, stage_profile: BlockProfile) -> None:
    assert stage_profile.blocks == ev.space.names(BlockKind.STAGE)
    assert stage_profile.num_steps == STEPS
    values = torch.tensor(stage_profile.changes)
    assert values.shape == (len(stage_profile.blocks), STEPS)
    assert bool((values >= 0).all()) and bool(torch.isfinite(values).all())
    assert bool((values[:, 0] == 0).all())
    assert bool((values[:, 1:] > 0).all())  # every block changes between steps
    # No profiling hook survives.
    for name in ev.space.names():
        assert not ev.denoiser.get_submodule(name)._forward_hooks, name
    assert getattr(ev.denoiser, "_cachesearch_applied", None) is None


def test_profile_equals_a_direct_computation(ev: Evaluator, stage_profile: BlockProfile) -> None:
    block = "up_blocks.1"
    outputs: list[torch.Tensor] = []
    module = ev.denoiser.get_submodule(block)
    handle = module.register_forward_hook(lambda m, a, out: outputs.append(out.detach().double().flatten(1)))
    try:
        ps = ev.prompt_set("train")
        ev.generate_batch(list(ps.prompts), ev.latents("train"), list(ps.seeds), {"num_inference_steps": STEPS})
    finally:
        handle.remove()
    assert len(outputs) == STEPS
    expected = [0.0] + [
        float(((outputs[s] - outputs[s - 1]).abs().sum(1) / outputs[s - 1].abs().sum(1)).mean())
        for s in range(1, STEPS)
    ]
    row = stage_profile.changes[stage_profile.blocks.index(block)]
    assert row == pytest.approx(expected, rel=1e-9)


def test_per_image_changes_summarise_to_the_profile(ev: Evaluator, stage_profile: BlockProfile) -> None:
    from cachesearch.evaluate import profile_images

    blocks, per_image = profile_images(ev, granularity="stage")
    assert blocks == stage_profile.blocks and per_image.shape == (2, len(blocks), STEPS)  # 2 images (CFG rows averaged)
    assert torch.allclose(per_image.mean(0), torch.tensor(stage_profile.changes, dtype=torch.float64), rtol=1e-9)
    p90 = profile_blocks(ev, granularity="stage", statistic="p90")
    assert torch.allclose(torch.tensor(p90.changes, dtype=torch.float64), torch.quantile(per_image, 0.9, dim=0),
                          rtol=1e-12)
    assert all(a >= b - 1e-12 for ra, rb in zip(p90.changes, stage_profile.changes) for a, b in zip(ra, rb))
    with pytest.raises(ValueError, match="statistic: expected 'mean' or 'p90'"):
        profile_blocks(ev, statistic="max")


def test_a_profile_over_more_prompts_than_the_split_draws_them_from_the_same_pool(ev: Evaluator, tmp_path) -> None:
    wider = profile_blocks(ev, granularity="stage", n=3)  # the split has 2 prompts
    config = EvalConfig(num_inference_steps=STEPS, n_train=3, n_heldout=1, batch_size=2, cache_dir=str(tmp_path))
    three = Evaluator(config, model=load_model("embedded"))
    assert ev.fixtures.prompt_pool("train", 3) == three.prompt_set("train")
    assert torch.equal(ev.fixtures.latents_for(three.prompt_set("train").seeds), three.latents("train"))
    assert wider == profile_blocks(three, granularity="stage")
    assert len(ev.fixtures.prompt_pool("train", 10_000)) == 180  # capped at the pool (the shapes captions' half)


def test_layer_profile_lists_every_layer(ev: Evaluator) -> None:
    profile = profile_blocks(ev, granularity="layer", n=1)
    assert profile.blocks == ev.space.names(BlockKind.LAYER)
    assert all(v >= 0 for row in profile.changes for v in row)
    with pytest.raises(ValueError, match="granularity"):
        profile_blocks(ev, granularity="blocks")  # "block" is an alias of "stage" (a DiT's blocks)


def test_save_and_load_profile(stage_profile: BlockProfile, ev: Evaluator, tmp_path: Path) -> None:
    json_path, png_path = save_profile(stage_profile, tmp_path / "p", metadata=ev.describe())
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png_path.stat().st_size > 1000
    doc = json.loads(json_path.read_text())
    assert doc["id"] == profile_id(stage_profile) and doc["meta"]["model"]["source"] == "embedded:shapes"
    assert load_profile(tmp_path / "p") == stage_profile
    doc["changes"][0][1] += 1.0
    json_path.write_text(json.dumps(doc))
    with pytest.raises(ScheduleError, match="id does not match"):
        load_profile(json_path)


def test_blockcaching_recomputes_fewer_blocks_at_larger_thresholds(
    ev: Evaluator, stage_profile: BlockProfile
) -> None:
    fractions = []
    pid = profile_id(stage_profile)
    for t in (0.0, 0.05, 0.2, 0.5, 2.0, 100.0):
        sched = ev.compile(cs.BlockCachingAuto(threshold=t, profile=stage_profile, profile_id=pid))
        fractions.append(sched.recompute_fraction())
    assert fractions == sorted(fractions, reverse=True), fractions
    assert fractions[0] == 1.0 and fractions[-1] == pytest.approx(1 / STEPS)
    assert len(set(fractions)) >= 3
    result = ev.evaluate(ev.compile(cs.BlockCachingAuto(threshold=0.5, profile=stage_profile)))
    assert result.valid and result.cost_ratio < 1


def test_profiling_under_an_applied_schedule_is_refused(ev: Evaluator) -> None:
    with ev.compile(cs.DeepCache(interval=2, branch=0)).applied(ev.pipe), pytest.raises(ScheduleError, match="applied"):
        profile_blocks(ev)


def _first_tensor(out: object) -> torch.Tensor:
    """The rule the profiler used before block outputs came from the adapter's I/O contract."""
    while not isinstance(out, torch.Tensor):
        out = out.sample if hasattr(out, "sample") else out[0]  # type: ignore[index, attr-defined]
    return out


def test_tuple_outputs_are_read_through_the_block_io_contract(tmp_path: Path) -> None:
    # A down stage returns (hidden, skips), an attention layer (sample,): the profile must follow the hidden
    # state, which is the first tensor, as before the adapter owned the output layout.
    from cachesearch.adapters import denoiser_of
    from cachesearch.models._loaders import LoadedModel
    from tests._tiny import tiny_sd_pipeline

    steps = 3
    pipe = tiny_sd_pipeline(blocks=2)
    model = LoadedModel(pipe=pipe, denoiser=denoiser_of(pipe), source="tiny", random_weights=True, family="unet2d")
    size = {"height": 32, "width": 32}
    config = EvalConfig(model="tiny", num_inference_steps=steps, n_train=2, cache_dir=str(tmp_path), **size)
    tiny = Evaluator(config, model=model)
    profiles = {"stage": profile_blocks(tiny, granularity="stage"), "layer": profile_blocks(tiny, granularity="layer")}
    blocks = {"down_blocks.0": "stage", "down_blocks.1.attentions.0": "layer", "mid_block.attentions.0": "layer"}
    outputs: dict[str, list[torch.Tensor]] = {b: [] for b in blocks}

    def keep(b: str) -> object:
        return lambda m, a, out: outputs[b].append(_first_tensor(out).detach().double().flatten(1))

    handles = [tiny.denoiser.get_submodule(b).register_forward_hook(keep(b)) for b in blocks]
    try:
        ps = tiny.prompt_set("train")
        tiny.generate_batch(list(ps.prompts), tiny.latents("train"), list(ps.seeds), {"num_inference_steps": steps})
    finally:
        for h in handles:
            h.remove()
    for b, kind in blocks.items():
        seen = outputs[b]
        assert len(seen) == steps, b
        expected = [0.0] + [
            float(((seen[s] - seen[s - 1]).abs().sum(1) / seen[s - 1].abs().sum(1)).mean()) for s in range(1, steps)
        ]
        profile = profiles[kind]
        assert profile.changes[profile.blocks.index(b)] == pytest.approx(expected, rel=1e-9), b


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_transformer_profiles_at_block_and_component_granularity_feed_block_caching(family, tmp_path):
    """A DiT's blocks (``granularity="block"``, its stages) and components profile through the evaluator, and
    Block Caching's threshold schedule compiles from either."""
    from cachesearch.models._loaders import LoadedModel
    from tests._tiny_dit import tiny_dit_pipeline

    pipe = tiny_dit_pipeline(family)
    model = LoadedModel(pipe=pipe, denoiser=pipe.transformer, source="test", random_weights=True, family=family)
    config = EvalConfig(num_inference_steps=STEPS, n_train=2, n_heldout=1, batch_size=2, cache_dir=str(tmp_path),
                        height=16, width=16)
    ev = Evaluator(config, model=model)
    for granularity, kind in (("block", BlockKind.STAGE), ("component", BlockKind.COMPONENT)):
        profile = profile_blocks(ev, granularity=granularity)
        assert profile.blocks == ev.space.names(kind) and profile.num_steps == STEPS
        values = torch.tensor(profile.changes)
        assert bool((values[:, 0] == 0).all()) and bool((values[:, 1:] > 0).all())
        sched = ev.compile(cs.BlockCachingAuto(threshold=0.15, profile=profile))
        assert set(sched.masks()) == set(profile.blocks) and "." in "".join(sched.masks().values())
