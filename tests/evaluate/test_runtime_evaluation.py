"""The evaluator on runtime schedules: one image per pipeline call (each starts with a cold cache), the cost is what
executed — counted, per image, averaged — recorded apart for the train and the held-out images; a fresh counted run
of the same schedule gives the same number."""

from __future__ import annotations

import contextlib

import pytest
import torch
from diffusers.hooks import FirstBlockCacheConfig

import cachesearch as cs
from cachesearch.evaluate import EvalConfig, Evaluator
from cachesearch.models._executed_cost import ExecutedCost
from cachesearch.models._loaders import LoadedModel
from tests._tiny_dit import tiny_guided_flux_pipeline

STEPS = 6


@pytest.fixture(scope="module")
def ev(tmp_path_factory):
    pipe = tiny_guided_flux_pipeline(seed=7)
    model = LoadedModel(pipe=pipe, denoiser=pipe.transformer, source="path:/tiny-guided", family="flux",
                        random_weights=True)
    config = EvalConfig(model="path:/tiny-guided", n_train=3, n_heldout=2, batch_size=2, num_inference_steps=STEPS,
                        height=16, width=16, guidance_scale=3.0, cache_dir=str(tmp_path_factory.mktemp("refs")))
    return Evaluator(config, model=model)


def _fbcache(ev, threshold):
    return ev.compile(cs.DiffusersCache(FirstBlockCacheConfig(threshold=threshold)))


def _dbcache(ev, threshold):
    pytest.importorskip("cache_dit", reason="cache-dit is not installed (cachesearch[cache-dit])")
    return ev.compile(cs.CacheDiT(cache_config={"method": "DBCacheConfig", "Fn_compute_blocks": 1,
                                                "Bn_compute_blocks": 0, "residual_diff_threshold": threshold,
                                                "max_warmup_steps": 1, "num_inference_steps": STEPS}))


@pytest.mark.parametrize("make", [_fbcache, _dbcache], ids=["fbcache", "dbcache"])
def test_recorded_cost_equals_the_executed_modules_of_a_fresh_run(ev, make):
    """The evaluator's recorded cost against a fresh run of each image counted three ways: ExecutedCost at the
    shapes that ran, torch's FlopCounterMode (the real matmuls and attention), and a forward hook on one leaf
    ``Linear`` in each block (it fires only when the block really computed: a cached block's forward is replaced
    whole, so its inner layers are not called)."""
    sched = make(ev, 0.2)
    res = ev.evaluate(sched, split="train")
    assert res.valid, res.reason
    assert sched.kind == "runtime" and ev.cost_ratio(sched) is None  # no analytic price: counted
    ps, latents = ev.prompt_set("train"), ev.latents("train")
    blocks = [n for n, _ in ev.denoiser.named_modules() if n.count(".") == 1 and "blocks." in n]
    leaves = {n: [m for m in ev.denoiser.get_submodule(n).modules() if isinstance(m, torch.nn.Linear)][-1]
              for n in blocks}
    counter = ExecutedCost(ev.denoiser, flop_check=True)  # its own MACs, measured at the shapes that run

    def fresh(i: int, cached: bool) -> tuple[object, dict[str, int]]:
        seen = dict.fromkeys(blocks, 0)
        hooks = [leaf.register_forward_hook(lambda *a, n=n: seen.__setitem__(n, seen[n] + 1))
                 for n, leaf in leaves.items()]
        try:
            with sched.applied(ev.pipe) if cached else contextlib.nullcontext():
                counter.reset()
                with counter.counting():
                    ev.generate_batch([ps.prompts[i]], latents[i:i + 1], [ps.seeds[i]],
                                      {"num_inference_steps": STEPS})
        finally:
            for h in hooks:
                h.remove()
        return counter.report(), seen

    full_flops = fresh(0, cached=False)[0].flop_counter_macs  # every image has the same shapes and calls
    reports, leaf_runs = zip(*(fresh(i, cached=True) for i in range(len(ps))), strict=True)
    assert res.cost_ratio == pytest.approx(sum(r.ratio() for r in reports) / len(reports), rel=1e-12)
    for report, seen in zip(reports, leaf_runs, strict=True):
        # what ran by torch's own count (the guided transformer runs [uncond; cond] inside: twice the MACs of
        # the input's batch, on the cached and the full run alike)
        assert report.flop_counter_macs / full_flops == pytest.approx(report.ratio(), rel=1e-12)
        assert {n: report.runs[n] for n in blocks} == seen  # blocks that computed, by their inner layers
        assert report.calls == STEPS and seen[blocks[0]] == STEPS  # the first block runs every step
    middle = blocks[1]
    assert 0 < res.cost_ratio < 1 and min(s[middle] for s in leaf_runs) < STEPS  # some steps were cached


def test_each_image_starts_cold_and_a_range_gives_the_images_of_the_whole_split(ev):
    sched = _fbcache(ev, 0.2)
    counter = ev.executed_cost
    kwargs = sched.pipeline_kwargs()
    kwargs.pop("guidance_scale")
    with sched.applied(ev.pipe):
        whole, costs = ev._generate_counted(counter, "train", kwargs, "whole", slice(0, 3))
    with sched.applied(ev.pipe):  # the last image alone, after nothing else ran
        alone, cost = ev._generate_counted(counter, "train", kwargs, "alone", slice(2, 3))
    assert torch.equal(whole[2:], alone) and costs[2] == cost[0]
    first = ev.evaluate(sched, split="train", images=slice(0, 1))
    rest = ev.evaluate(sched, split="train", images=slice(1, 3))
    merged = type(first).merge([first, rest], total=3)
    full = ev.evaluate(sched, split="train")
    assert merged.cost_ratio == pytest.approx(full.cost_ratio), (merged, full)
    assert merged.quality == pytest.approx(full.quality, rel=1e-5)  # the metric on 1 + 2 images vs 3: rounding


def test_a_cache_that_never_skips_costs_full_compute_and_matches_the_reference(ev):
    res = ev.evaluate(_fbcache(ev, 0.0), split="heldout")
    assert res.valid and res.cost_ratio == 1.0
    assert res.quality < 1e-4  # one image per call vs the reference's batches of two: float rounding at most


def test_train_and_heldout_costs_are_recorded_apart(ev, tmp_path):
    sched = _fbcache(ev, 0.25)
    train, heldout = ev.evaluate(sched, split="train"), ev.evaluate(sched, split="heldout")
    metrics = ev.to_schedule_metrics(train, heldout)
    assert metrics.latency.cost_ratio == train.cost_ratio
    expected = None if heldout.cost_ratio == train.cost_ratio else heldout.cost_ratio
    assert metrics.latency.cost_ratio_heldout == expected
    saved = sched.with_updates(metrics=metrics).save(tmp_path / "s.yaml")
    assert cs.load_schedule(saved).metrics == metrics


def test_two_passes_per_step_count_against_their_own_full_compute(tmp_path):
    """Wan runs CFG as two denoiser calls per step: a runtime cache that never skips costs exactly 1, one that
    skips costs its share of those calls."""
    from cachesearch.models._loaders import load_model

    loaded = load_model("arch:wan2.1-tiny")
    ev = Evaluator(EvalConfig(model="arch:wan2.1-tiny", n_train=1, n_heldout=1, num_inference_steps=4,
                              cache_dir=str(tmp_path)), model=loaded)
    never = ev.evaluate(_fbcache(ev, 0.0))
    assert never.valid and never.cost_ratio == 1.0 and never.quality == 0.0  # one image: the reference's own call
    skips = ev.evaluate(_fbcache(ev, 10.0))
    assert skips.valid and 0 < skips.cost_ratio < 1
