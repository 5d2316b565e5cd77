"""fit_scale_shift: both methods reduce the error they fit, and fit → save → load → apply is exact."""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

import cachesearch as cs
from cachesearch.adapters import block_io_of
from tests._tiny import tiny_sd_pipeline

PROMPTS = ["a red circle on a blue background", "a green square"]
MASKS = {"down_blocks.1.attentions.0": "R.R.", "mid_block": "RR.R", "up_blocks.0.attentions.1": "R..R"}
SIZE = {"height": 32, "width": 32}


@pytest.fixture(scope="module")
def pipe():
    return tiny_sd_pipeline(seed=3)


@pytest.fixture(scope="module")
def sched(pipe):
    return cs.compile_schedule(pipe, cs.BlockMask(masks=MASKS), num_inference_steps=4, guidance_scale=5.0)


def _latents(pipe, sched, seeds=(0, 1)):
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    with sched.applied(pipe):
        return pipe(prompt=PROMPTS, generator=gens, output_type="latent", **sched.pipeline_kwargs(), **SIZE).images


def _full(pipe, sched, seeds=(0, 1)):
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    return pipe(prompt=PROMPTS, generator=gens, output_type="latent", **sched.pipeline_kwargs(), **SIZE).images


def test_fitter_is_not_imported_by_the_runtime_path():
    assert "cachesearch.evaluate._scale_shift" not in sys.modules or callable(cs.fit_scale_shift)
    assert "fit_scale_shift" in cs.__all__


def test_lstsq_lowers_block_error_on_its_own_data_and_round_trips_exactly(pipe, sched, tmp_path):
    fitted = cs.fit_scale_shift(pipe, sched, prompts=PROMPTS, n_images=2, **SIZE)
    assert fitted.format == "cachesearch/schedule@2" and fitted.metrics is None
    assert {k for k in fitted.scale_shift} == {(b, s) for b, m in MASKS.items() for s, c in enumerate(m) if c == "."}
    # block-level error on the fitting data: reused (stored) vs fresh output, with and without the affine
    errs = {"plain": 0.0, "fitted": 0.0}
    with sched.applied(pipe) as h:
        ios = [block_io_of(m) for m in h._modules]

        def probe(i, step, out, run, args, kwargs):
            io = ios[i]
            x, y = io.hidden_output(out), io.hidden_output(run(*args, **kwargs))
            scale, shift = (torch.from_numpy(a.copy()) for a in fitted.scale_shift[(h._names[i], step)])
            shape = [1] * x.ndim
            shape[io.channel_dim] = -1
            errs["plain"] += float(((x - y) ** 2).sum())
            errs["fitted"] += float(((scale.view(shape) * x + shift.view(shape) - y) ** 2).sum())

        h._probe = probe
        with torch.no_grad():
            gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
            pipe(prompt=PROMPTS, generator=gens, output_type="latent", **sched.pipeline_kwargs(), **SIZE)
    print(f"lstsq block-level SSE: {errs['plain']:.4g} -> {errs['fitted']:.4g}")
    assert errs["fitted"] < 0.9 * errs["plain"]
    # the affine changes the output; the saved and reloaded schedule gives exactly the in-memory one's
    in_memory = _latents(pipe, fitted)
    assert not torch.equal(in_memory, _latents(pipe, sched))
    loaded = cs.load_schedule(fitted.save(tmp_path / "fitted.yaml"))
    assert loaded == fitted
    assert torch.equal(_latents(pipe, loaded), in_memory)
    # identity scale-shift is bit-exact with no scale-shift
    ident = cs.ScaleShift({k: (np.ones_like(a), np.zeros_like(b)) for k, (a, b) in fitted.scale_shift.entries.items()})
    assert torch.equal(_latents(pipe, replace(sched, scale_shift=ident)), _latents(pipe, sched))


def test_distill_lowers_final_output_error_on_its_fitting_data(pipe, sched):
    grads = [p.requires_grad for p in pipe.unet.parameters()]
    fitted = cs.fit_scale_shift(pipe, sched, prompts=PROMPTS, n_images=2, method="distill", iterations=12, lr=0.02,
                                **SIZE)
    assert [p.requires_grad for p in pipe.unet.parameters()] == grads  # the model was frozen, then restored
    full = _full(pipe, sched)
    before = float(((_latents(pipe, sched) - full) ** 2).mean())
    after = float(((_latents(pipe, fitted) - full) ** 2).mean())
    print(f"distill final-latent MSE: {before:.4g} -> {after:.4g}")
    assert after < before


def test_bad_arguments_are_refused(pipe, sched):
    with pytest.raises(ValueError, match="method"):
        cs.fit_scale_shift(pipe, sched, method="adam")
    full = cs.compile_schedule(pipe, cs.Full(), num_inference_steps=4)
    with pytest.raises(cs.ScheduleError, match="nothing to fit"):
        cs.fit_scale_shift(pipe, full)
