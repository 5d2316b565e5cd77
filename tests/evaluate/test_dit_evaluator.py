"""The evaluator on transformer pipelines (tiny random FLUX, SD3, PixArt): the same fixtures and scores."""

from __future__ import annotations

import pytest

import cachesearch as cs
from cachesearch.evaluate import EvalConfig, Evaluator
from cachesearch.models._loaders import LoadedModel
from tests._tiny_dit import FAMILIES, tiny_dit_pipeline


@pytest.mark.parametrize("family", FAMILIES)
def test_evaluator_scores_transformer_schedules_against_full_compute(family: str, tmp_path) -> None:
    pipe = tiny_dit_pipeline(family)
    model = LoadedModel(pipe=pipe, denoiser=pipe.transformer, source="path:/tiny", family=family,
                        random_weights=False)
    ev = Evaluator(EvalConfig(model="path:/tiny", n_train=1, n_heldout=1, num_inference_steps=4, height=16,
                              width=16, cache_dir=str(tmp_path)), model=model)
    full = ev.evaluate(cs.compile_schedule(pipe, cs.Full(), num_inference_steps=4))
    assert full.valid and full.quality == 0.0 and full.cost_ratio == pytest.approx(1.0)
    taylor = ev.evaluate(cs.compile_schedule(pipe, cs.TaylorSeer(interval=2, warmup=1), num_inference_steps=4))
    assert taylor.valid, taylor.reason
    assert taylor.quality > 0.0 and taylor.cost_ratio < 1.0
