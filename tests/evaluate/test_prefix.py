"""Exact prefix sharing: a candidate resumed from an earlier one's state after their common steps produces the
images of an independent run bit for bit (DDIM and the multistep DPM-Solver++; output and Taylor reuse), skips
the denoiser's computation for the replayed calls, and counts its MACs as executed + reused."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch

from cachesearch._compile import compile_schedule
from cachesearch.adapters import denoiser_of
from cachesearch.evaluate import EvalConfig, Evaluator
from cachesearch.evaluate._prefix import PrefixCache
from cachesearch.models._loaders import LoadedModel
from cachesearch.schedule import BlockMask, Full
from tests._tiny import tiny_sd_pipeline

STEPS = 6
MASKS = {  # each shares a prefix with "a"; the comment says from which step it resumes and why
    "a": {"up_blocks.0": "RR.R.R", "down_blocks.1": "RRR.RR"},
    # rows 0-2 equal; mid_block is not wrapped by "a" but only runs there, up_blocks.0 recomputes at step 3
    "b": {"up_blocks.0": "RR.RR.", "mid_block": "RRRR.R"},
    # rows 0-3 equal and every action before step 4 too
    "c": {"up_blocks.0": "RR.R.R", "down_blocks.1": "RRR..R"},
    # rows 0-4 equal, but down_blocks.1 stores at step 4 where "a" did not: resumes at step 4, not 5
    "d": {"up_blocks.0": "RR.R.R", "down_blocks.1": "RRR.R."},
}
RESUME = {"output": {"a": 0, "b": 3, "c": 4, "d": 4}, "taylor": {"a": 0, "b": 0, "c": 4, "d": 4}}


class _Spy:
    """The images an evaluator scored last, and how often a leaf inside the denoiser ran."""

    def __init__(self, ev: Evaluator) -> None:
        self.images: torch.Tensor | None = None
        self.leaf_calls = 0
        score = ev._score

        def spy(images: torch.Tensor, reference: torch.Tensor) -> dict:
            self.images = images
            return score(images, reference)

        ev._score = spy  # type: ignore[method-assign]
        ev.denoiser.conv_in.register_forward_hook(lambda *_: setattr(self, "leaf_calls", self.leaf_calls + 1))


def _evaluator(scheduler: str, cache_dir: Path, mb: int) -> tuple[Evaluator, _Spy]:
    pipe = tiny_sd_pipeline(blocks=2)
    model = LoadedModel(pipe=pipe, denoiser=denoiser_of(pipe), source="tiny", random_weights=True, family="unet2d")
    config = EvalConfig(model="tiny", num_inference_steps=STEPS, n_train=2, batch_size=1, scheduler=scheduler,
                        guidance_scale=7.5, height=32, width=32, cache_dir=str(cache_dir), prefix_cache_mb=mb)
    ev = Evaluator(config, model=model)
    ev.reference("train")
    return ev, _Spy(ev)


@pytest.mark.parametrize(("scheduler", "reuse"), [("ddim", "output"), ("dpmsolver++", "output"),
                                                   ("dpmsolver++", "taylor")])
def test_resumed_candidates_equal_independent_runs_bit_for_bit(scheduler: str, reuse: str, tmp_path: Path) -> None:
    shared, s_spy = _evaluator(scheduler, tmp_path, 64)
    alone, a_spy = _evaluator(scheduler, tmp_path, 0)
    assert shared.cfg
    for name, masks in MASKS.items():
        schedule = compile_schedule(shared.pipe, BlockMask(masks), num_inference_steps=STEPS, reuse=reuse,
                                    source="tiny", space=shared.space)
        s_spy.leaf_calls = a_spy.leaf_calls = 0
        mine, theirs = shared.evaluate(schedule), alone.evaluate(schedule)
        assert mine.valid and theirs.valid
        assert torch.equal(s_spy.images, a_spy.images), name
        assert mine.quality == theirs.quality
        k = RESUME[reuse][name]
        per_call = shared.call_macs(schedule)
        assert a_spy.leaf_calls == 2 * STEPS  # two batches of one image, one call per step
        assert s_spy.leaf_calls == 2 * (STEPS - k), f"{name}: the replayed calls must not compute"
        assert theirs.macs == pytest.approx(2 * sum(per_call)) and theirs.macs_reused == 0
        assert mine.macs_reused == pytest.approx(2 * sum(per_call[:k]))
        assert mine.macs + mine.macs_reused == pytest.approx(theirs.macs)
    assert shared.prefixes.stats.resumed == 2 * sum(1 for k in RESUME[reuse].values() if k)


def test_image_macs_of_full_compute_is_every_call_of_both_cfg_branches(tmp_path: Path) -> None:
    ev, _ = _evaluator("ddim", tmp_path, 0)
    stages = [b for b in ev.space.blocks if b.kind.value == "stage"]
    full = ev.space.other_macs + sum(b.macs for b in stages)
    assert ev.image_macs(ev.compile(Full())) == pytest.approx(2 * STEPS * full)


def test_a_budget_too_small_for_one_batch_keeps_nothing(tmp_path: Path) -> None:
    ev, spy = _evaluator("ddim", tmp_path, 64)
    ev.prefixes = PrefixCache(1)
    for name in ("a", "c"):
        ev.evaluate(compile_schedule(ev.pipe, BlockMask(MASKS[name]), num_inference_steps=STEPS, source="tiny",
                                     space=ev.space))
    assert ev.prefixes.stats.resumed == 0 and ev.prefixes.nbytes == 0
    assert spy.leaf_calls == 2 * 2 * STEPS


def test_latency_measurements_never_replay(tmp_path: Path) -> None:
    ev, spy = _evaluator("ddim", tmp_path, 64)
    for name in ("a", "c"):
        schedule = compile_schedule(ev.pipe, BlockMask(MASKS[name]), num_inference_steps=STEPS, source="tiny",
                                    space=ev.space)
        ev.evaluate(schedule, measure=name == "c")
    assert ev.prefixes.stats.resumed == 0


@pytest.mark.parametrize("true_cfg", [None, 2.5])
def test_flux_shares_with_one_pass_per_step_and_never_with_two(true_cfg: float | None) -> None:
    """FLUX calls its transformer in ``cache_context("cond")``; with true CFG also in ``("uncond")``, two calls
    per step: those runs are neither recorded nor resumed, and every run stays exact."""
    from cachesearch.runtime import denoiser_of as called_of
    from cachesearch.runtime import steps_of_calls
    from tests._tiny_dit import pipeline_kwargs, tiny_dit_pipeline

    pipe = tiny_dit_pipeline("flux", seed=1)
    prefix = PrefixCache(64 << 20)
    masks = {"a": {"transformer_blocks.0.attn": "RR.R.R", "single_transformer_blocks.0": "RRR.RR"},
             "c": {"transformer_blocks.0.attn": "RR.R.R", "single_transformer_blocks.0": "RRR..R"}}
    leaf = pipe.transformer.x_embedder
    calls = []
    leaf.register_forward_hook(lambda *_: calls.append(1))
    kw = {**pipeline_kwargs("flux"), "num_inference_steps": STEPS, "output_type": "pt"}
    if true_cfg is not None:
        kw.update(negative_prompt="a blue square", true_cfg_scale=true_cfg)

    def run(name: str, shared: bool) -> torch.Tensor:
        schedule = compile_schedule(pipe, BlockMask(masks[name]), num_inference_steps=STEPS)
        calls.clear()
        with schedule.applied(pipe) as applied:
            step_of_call = steps_of_calls(pipe.scheduler, STEPS, STEPS)
            ctx = prefix.batch(schedule, applied, called_of(pipe), ("x",), step_of_call) if shared else None
            with ctx if ctx is not None else contextlib.nullcontext():
                return pipe("a red circle", generator=torch.Generator().manual_seed(0), **kw).images

    for name in ("a", "c"):
        alone, n_alone = run(name, shared=False), len(calls)
        shared, n_shared = run(name, shared=True), len(calls)
        assert torch.equal(alone, shared), name
    passes = 1 if true_cfg is None else 2
    assert n_alone == passes * STEPS
    if true_cfg is None:
        assert prefix.stats.resumed == 1 and n_shared == STEPS - 4  # "c" resumed at step 4
    else:
        assert prefix.stats.resumed == 0 and prefix.nbytes == 0 and n_shared == 2 * STEPS
