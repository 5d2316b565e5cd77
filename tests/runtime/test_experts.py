"""Wan pipelines: the cond and uncond passes of every step, and Wan 2.2 A14B's two experts (``transformer`` above the
boundary timestep, ``transformer_2`` below), on tiny random-weight ``WanPipeline`` s.

A schedule covers both experts: its rows go to whichever expert runs the step (the pipeline decides; the hooks on
both experts count the calls), the step the second expert takes over recomputes every block, and leaf modules
inside the blocks run exactly at the R steps of the expert and pass that runs them.
"""

from __future__ import annotations

import re

import pytest
import torch

import cachesearch as cs
from cachesearch.models._presets_wan import tiny_wan_pipeline
from cachesearch.runtime import expert_starts, experts_of

STEPS = 8
PROMPT = "a red ball rolls"


@pytest.fixture(scope="module")
def a14b():
    return tiny_wan_pipeline("wan2.2-a14b-tiny", seed=3)


@pytest.fixture(scope="module")
def wan21():
    return tiny_wan_pipeline("wan2.1-tiny", seed=4)


def generate(pipe, guidance=4.0, steps=STEPS):
    return pipe(PROMPT, negative_prompt="blurry", num_inference_steps=steps, guidance_scale=guidance, height=16,
                width=16, num_frames=9, max_sequence_length=16, output_type="latent",
                generator=torch.Generator().manual_seed(0)).frames


class Runs:
    """Per (expert attribute, pass): the steps at which a leaf Linear inside each named block ran."""

    def __init__(self, pipe, names):
        self.pipe, self.pass_, self.step = pipe, None, -1
        self.runs: dict[tuple, list[int]] = {}
        self.calls: list[tuple[str, str]] = []
        self.handles, self.weights = [], {}
        for attr in ("transformer", "transformer_2"):
            model = getattr(pipe, attr)
            original = model.cache_context

            def context(name, *a, _original=original, **k):
                self.pass_ = name
                return _original(name, *a, **k)

            model.cache_context = context
            self.handles.append(model.register_forward_pre_hook(lambda m, a, attr=attr: self._call(attr)))
            for n in names:
                linear = next(x for x in model.get_submodule(n).modules() if isinstance(x, torch.nn.Linear))
                self.weights[id(linear.weight)] = (attr, n)

    def _call(self, attr):
        self.calls.append((attr, self.pass_))
        self.step += self.pass_ == "cond"

    def linear(self, original):
        def counting(x, weight, *args, **kwargs):
            key = self.weights.get(id(weight))
            if key is not None:
                self.runs.setdefault((*key, self.pass_), []).append(self.step)
            return original(x, weight, *args, **kwargs)
        return counting

    def close(self):
        for h in self.handles:
            h.remove()
        for attr in ("transformer", "transformer_2"):
            del getattr(self.pipe, attr).cache_context


def test_the_pipeline_switches_experts_where_the_adapter_says(a14b):
    per_call = cs.adapters.adapter_for(a14b.transformer).expert_steps(a14b, STEPS)
    assert [a for a, _ in experts_of(a14b)] == ["transformer", "transformer_2"]
    assert 0 in per_call and 1 in per_call and list(per_call) == sorted(per_call)
    rec = Runs(a14b, [])
    try:
        generate(a14b)
    finally:
        rec.close()
    names = ["transformer", "transformer_2"]
    assert rec.calls == [(names[e], p) for e in per_call for p in ("cond", "uncond")]
    assert expert_starts(a14b, STEPS) == (per_call.index(1),)


def test_all_r_is_exact_and_remove_restores_both_experts(a14b):
    base = generate(a14b)
    for policy in (cs.Full(), cs.TaylorSeer(interval=1, warmup=0)):
        sched = cs.compile_schedule(a14b, policy, num_inference_steps=STEPS)
        with sched.applied(a14b):
            assert torch.equal(generate(a14b), base)
    for model in (a14b.transformer, a14b.transformer_2):
        assert all("forward" not in m.__dict__ for m in model.modules())
        assert "cache_context" not in model.__dict__ and not hasattr(model, "_cachesearch_applied")


@pytest.mark.parametrize("per_branch", [False, True])
def test_each_step_row_goes_to_the_expert_that_runs_it(a14b, monkeypatch, per_branch):
    switch = expert_starts(a14b, STEPS)[0]
    every_other = "".join("R" if s % 2 == 0 else "." for s in range(STEPS))
    masks = {"blocks.0": "R" + "." * (STEPS - 1), "blocks.1.attn1": every_other, "blocks.1.ffn": "RR.R..R."}
    if per_branch:
        masks["blocks.1.ffn"] = {"cond": "RR.R..R.", "uncond": "R.R.R..."}
    sched = cs.compile_schedule(a14b, cs.BlockMask(masks), num_inference_steps=STEPS)
    assert all(bm.cond[switch] == bm.uncond[switch] == "R" for bm in sched.blocks)  # compile recomputes there
    per_call = cs.adapters.adapter_for(a14b.transformer).expert_steps(a14b, STEPS)
    rec = Runs(a14b, list(masks))
    try:
        with sched.applied(a14b):
            monkeypatch.setattr(torch.nn.functional, "linear", rec.linear(torch.nn.functional.linear))
            out = generate(a14b)
            monkeypatch.undo()
    finally:
        rec.close()
    assert torch.isfinite(out).all()
    for e, attr in enumerate(("transformer", "transformer_2")):
        for branch in ("cond", "uncond"):
            for bm in sched.blocks:
                mask = getattr(bm, branch)
                want = [s for s in range(STEPS) if per_call[s] == e and mask[s] == "R"]
                assert rec.runs.get((attr, bm.block, branch), []) == want, (attr, bm.block, branch)


def test_a_reuse_at_the_switch_step_is_refused_naming_the_block(a14b):
    switch = expert_starts(a14b, STEPS)[0]
    sched = cs.compile_schedule(a14b, cs.BlockMask({"blocks.1": "R" * STEPS}), num_inference_steps=STEPS)
    bad = "".join("." if s == switch else "R" for s in range(STEPS))
    edited = sched.with_updates(blocks=(cs.schedule.BlockEntry(block="blocks.1", cond=bad, uncond=bad),))
    with pytest.raises(cs.ScheduleError, match=re.escape('blocks["blocks.1"]') + f": step {switch} .*switches experts"):
        edited.apply(a14b)
    assert "forward" not in a14b.transformer.get_submodule("blocks.1").__dict__


def test_a_schedule_for_one_expert_is_refused_on_the_pipeline_and_back(a14b):
    one = cs.compile_schedule(a14b.transformer, cs.BlockMask({"blocks.0": "R.R.R.R."}), num_inference_steps=STEPS)
    with pytest.raises(cs.ScheduleError, match=r"^model\.fingerprint: .*made for one expert \(transformer's .*"
                                               r"transformer and transformer_2"):
        one.apply(a14b)
    both = cs.compile_schedule(a14b, cs.BlockMask({"blocks.0": "R.R.R.R."}), num_inference_steps=STEPS)
    assert both.model.fingerprint != one.model.fingerprint
    with pytest.raises(cs.ScheduleError, match=r"^model\.fingerprint: "):
        both.apply(a14b.transformer_2)


def test_per_branch_masks_on_a_call_without_guidance_are_refused(wan21):
    sched = cs.compile_schedule(wan21, cs.BlockMask({"blocks.0": {"cond": "R.R.R.R.", "uncond": "R...R..."}}),
                                num_inference_steps=STEPS)
    with sched.applied(wan21):
        with pytest.raises(cs.ScheduleError, match=re.escape('blocks["blocks.0"]') + ".*no classifier-free"):
            generate(wan21, guidance=1.0)
        assert torch.isfinite(generate(wan21)).all()  # with guidance: both passes, each its own mask
