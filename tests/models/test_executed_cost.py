"""ExecutedCost on the tiny FLUX pipeline: MACs of what actually ran, checked against cachesearch's analytic cost
model (static schedules), diffusers' dynamic and attention caches, and FlopCounterMode's count of the real run."""

from __future__ import annotations

import pytest
import torch
from diffusers.hooks import FirstBlockCacheConfig, TaylorSeerCacheConfig

import cachesearch as cs
from cachesearch.models import block_space
from cachesearch.models._executed_cost import ExecutedCost
from cachesearch.schedule import BlockKind
from tests._tiny_dit import pipeline_kwargs, tiny_dit_pipeline

STEPS = 6


@pytest.fixture(scope="module")
def pipe():
    return tiny_dit_pipeline("flux", seed=1)


def generate(pipe, **kw):
    kw = {"num_inference_steps": STEPS, **pipeline_kwargs("flux"), **kw}
    return pipe("a red circle", generator=torch.Generator().manual_seed(0), **kw).images


def counted(pipe, **kw):
    counter = ExecutedCost(pipe.transformer, **kw)
    with counter.counting():
        generate(pipe)
    return counter, counter.report()


@pytest.fixture
def diffusers_cache(pipe):
    def enable(config):
        pipe.transformer.enable_cache(config)

    yield enable
    if pipe.transformer.is_cache_enabled:
        pipe.transformer.disable_cache()


def test_full_compute_is_exactly_one_and_equals_the_flop_counter(pipe):
    counter, report = counted(pipe, flop_check=True)
    assert report.calls == STEPS and report.ratio() == 1.0
    assert set(report.runs.values()) == {STEPS}  # every block and component computed once per call
    assert report.executed_macs == report.full_macs == report.flop_counter_macs  # the replayed shapes are the real ones
    space = counter.costed_space()
    assert space is not None and space.other_macs > 0


def test_hooks_are_removed_and_counts_accumulate_until_reset(pipe):
    counter = ExecutedCost(pipe.transformer)
    with counter.counting():
        generate(pipe)
    generate(pipe)  # outside: not counted
    assert counter.report().calls == STEPS
    assert not pipe.transformer._forward_hooks and not pipe.transformer._forward_pre_hooks
    with counter.counting():
        generate(pipe)
    assert counter.report().calls == 2 * STEPS
    counter.reset()
    with pytest.raises(ValueError, match="no denoiser call"):
        counter.report().ratio()


@pytest.mark.parametrize("granularity", ["stage", "component"])
def test_a_cachesearch_mask_costs_its_compiled_cost_ratio(pipe, granularity):
    """With the evaluator's MAC table (``block_space(..., with_costs=True)``) the count equals the analytic
    ratio of the compiled masks; at the shapes that ran it equals that table's analytic ratio."""
    kind = BlockKind.STAGE if granularity == "stage" else BlockKind.COMPONENT
    names = block_space(pipe.transformer).names(kind)
    masks = {n: ("R.R..R" if i % 2 else "RR.R.R") for i, n in enumerate(names)}
    sched = cs.compile_schedule(pipe, cs.BlockMask(masks), num_inference_steps=STEPS)
    table = block_space(pipe.transformer, with_costs=True)
    with sched.applied(pipe):
        _, static = counted(pipe, space=table)
        counter, real = counted(pipe, flop_check=True)
    assert static.ratio() == pytest.approx(table.cost_ratio(sched.masks(), STEPS), abs=1e-12)
    assert real.ratio() == pytest.approx(counter.costed_space().cost_ratio(sched.masks(), STEPS), abs=1e-12)
    assert real.executed_macs == real.flop_counter_macs
    assert real.ratio() < 1.0
    for n, m in masks.items():
        assert real.runs[n] == m.count("R")


def test_a_reused_leaf_linear_component_does_not_count(pipe):
    """FLUX single blocks' ``proj_mlp`` is itself an ``nn.Linear``: its hooks fire whether or not its forward
    was replaced, so only a parameter read tells that it computed."""
    name = "single_transformer_blocks.0.proj_mlp"
    assert isinstance(pipe.transformer.get_submodule(name), torch.nn.Linear)
    sched = cs.compile_schedule(pipe, cs.BlockMask({name: "R.R..."}), num_inference_steps=STEPS)
    with sched.applied(pipe):
        _, report = counted(pipe, flop_check=True)
    assert report.runs[name] == 2 and report.runs["single_transformer_blocks.0"] == STEPS
    assert report.executed_macs == report.flop_counter_macs


def test_first_block_cache_with_a_huge_threshold_runs_fewer_blocks(pipe, diffusers_cache):
    diffusers_cache(FirstBlockCacheConfig(threshold=1e9))
    _, report = counted(pipe, flop_check=True)
    assert report.runs["transformer_blocks.0"] == STEPS  # the head block decides every step
    for n in ("transformer_blocks.1", "single_transformer_blocks.0", "single_transformer_blocks.1.attn"):
        assert report.runs[n] == 1  # only the first step, which has no residual to compare with
    assert report.executed_macs == report.flop_counter_macs
    assert 0.2 < report.ratio() < 0.5


def test_taylorseer_forecasts_count_as_not_run(pipe, diffusers_cache):
    """diffusers' rule: compute at steps < warm-up and when (step - warm-up - 1) % interval == 0."""
    interval, warmup = 2, 2
    diffusers_cache(TaylorSeerCacheConfig(cache_interval=interval, disable_cache_before_step=warmup, max_order=1,
                                          taylor_factors_dtype=torch.float32))
    _, report = counted(pipe, flop_check=True)
    computed = sum(s < warmup or (s - warmup - 1) % interval == 0 for s in range(STEPS))
    assert 0 < computed < STEPS
    attn = block_space(pipe.transformer).attention_components()
    assert {report.runs[a] for a in attn} == {computed}
    assert report.runs["transformer_blocks.0"] == report.runs["transformer_blocks.0.ff"] == STEPS
    assert report.executed_macs == report.flop_counter_macs and report.ratio() < 1.0


def test_fewer_steps_compare_with_the_reference_calls(pipe):
    sched = cs.compile_schedule(pipe, cs.StepSet(count=3))
    counter = ExecutedCost(pipe.transformer)
    with sched.applied(pipe), counter.counting():
        generate(pipe, **{k: v for k, v in sched.pipeline_kwargs().items() if k != "guidance_scale"})
    report = counter.report()
    assert report.calls == 3 and report.ratio() == 1.0 and report.ratio(STEPS) == pytest.approx(0.5)


def test_refusals():
    with pytest.raises(Exception, match="(?i)adapter|denoiser"):
        ExecutedCost(torch.nn.Linear(2, 2))
    model = tiny_dit_pipeline("flux").transformer
    with pytest.raises(ValueError, match="needs MACs"):
        ExecutedCost(model, space=block_space(model))
