"""The evaluator on the embedded model with few steps: exactness, monotone degradation, cost, robustness."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

import cachesearch as cs
from cachesearch.adapters import denoiser_of
from cachesearch.adapters.unet2d import UNet2DAdapter
from cachesearch.embedded import shapes
from cachesearch.evaluate import EvalConfig, EvalConfigError, EvalResult, Evaluator
from cachesearch.evaluate._prefix import PrefixCache
from cachesearch.models._loaders import LoadedModel, load_model
from cachesearch.schedule import ScheduleError, parse_schedule
from tests._tiny import tiny_sd_pipeline

EMBEDDED_WEIGHTS = shapes.pipeline_path() / "unet" / "diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def embedded() -> LoadedModel:
    if not EMBEDDED_WEIGHTS.is_file():
        pytest.skip("embedded weights are still being trained (file absent)")
    return load_model("embedded")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("refs")


@pytest.fixture(scope="module")
def ev(embedded: LoadedModel, cache_dir: Path) -> Evaluator:
    """4 steps, 2 train + 2 held-out images of 32 px, one batch each."""
    config = EvalConfig(num_inference_steps=4, n_train=2, n_heldout=2, batch_size=2, cache_dir=str(cache_dir))
    return Evaluator(config, model=embedded)


def _no_hooks_left(ev: Evaluator, pre_hooks_before: int) -> None:
    assert getattr(ev.denoiser, "_cachesearch_applied", None) is None
    assert len(ev.denoiser._forward_pre_hooks) == pre_hooks_before
    assert "set_timesteps" not in vars(ev.pipe.scheduler)
    for name in ev.space.names():
        assert "forward" not in vars(ev.denoiser.get_submodule(name)), name


def test_all_recompute_schedule_reproduces_the_reference_exactly(ev: Evaluator) -> None:
    result = ev.evaluate(ev.compile(cs.Full()))
    assert result.valid and result.reason is None
    assert result.quality == 0.0
    assert result.psnr == math.inf
    assert result.ssim == pytest.approx(1.0)
    assert result.cost_ratio == pytest.approx(1.0)
    assert result.metric == ev.metric_name and result.metric in ("lpips-alex", "stlpips-alex")
    assert result.n_images == 2 and result.split == "train"
    assert result.accuracy is not None and 0.0 <= result.accuracy <= 1.0
    assert result.latency_ms is None and result.speedup is None  # analytic mode measures nothing


def test_deepcache_quality_degrades_monotonically_with_interval(embedded: LoadedModel, cache_dir: Path) -> None:
    # 16 steps so that N = 8 still leaves two full steps; a shallow and a deeper skip branch.
    config = EvalConfig(num_inference_steps=16, n_train=2, n_heldout=1, batch_size=2, cache_dir=str(cache_dir))
    ev16 = Evaluator(config, model=embedded)
    for branch in (0, 4):
        results = {n: ev16.evaluate(ev16.compile(cs.DeepCache(interval=n, branch=branch))) for n in (2, 4, 8)}
        assert all(r.valid for r in results.values())
        q = [results[n].quality for n in (2, 4, 8)]
        cost = [results[n].cost_ratio for n in (2, 4, 8)]
        assert 0 < q[0] < q[1] < q[2], (branch, q)
        assert 1 > cost[0] > cost[1] > cost[2] > 0, (branch, cost)
        assert results[2].psnr > results[8].psnr


def test_fewer_steps_compare_against_the_full_step_reference(ev: Evaluator) -> None:
    sched = ev.compile(cs.StepSet(count=2))
    assert sched.num_steps == 2 and sched.pipeline_kwargs()["num_inference_steps"] == 2
    result = ev.evaluate(sched)
    assert result.valid
    assert result.cost_ratio == pytest.approx(2 / 4)
    assert result.quality > 0 and result.psnr < math.inf
    joint = ev.compile(cs.Joint(steps=cs.StepSet(count=2), mask=cs.DeepCache(interval=2, branch=0)))
    both = ev.evaluate(joint)
    assert both.valid and both.quality > 0
    assert both.cost_ratio == pytest.approx(2 / 4 * ev.space.cost_ratio(joint.masks(), 2))
    assert both.cost_ratio < result.cost_ratio


def test_heldout_split_uses_other_prompts(ev: Evaluator) -> None:
    sched = ev.compile(cs.DeepCache(interval=2, branch=0))
    train = ev.evaluate(sched, split="train")
    heldout = ev.evaluate(sched, split="heldout")
    assert heldout.valid and heldout.split == "heldout" and heldout.prompts != train.prompts
    assert heldout.cost_ratio == train.cost_ratio
    assert train.cost_ratio == pytest.approx(ev.space.cost_ratio(sched.masks(), sched.num_steps))
    metrics = ev.to_schedule_metrics(train, heldout)
    assert metrics.quality.train == train.quality and metrics.quality.heldout == heldout.quality
    assert metrics.quality.metric == ev.metric_name and metrics.quality.n_images == 4
    assert metrics.latency.cost_ratio == train.cost_ratio
    text = sched.with_updates(metrics=metrics).to_yaml()
    assert parse_schedule(yaml.safe_load(text)).metrics == metrics  # exportable as-is


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_output_is_an_invalid_result(ev: Evaluator, monkeypatch: pytest.MonkeyPatch, bad: float) -> None:
    pre_hooks = len(ev.denoiser._forward_pre_hooks)
    conv_out = ev.denoiser.conv_out
    original = conv_out.forward
    monkeypatch.setattr(conv_out, "forward", lambda x: original(x) * bad)
    result = ev.evaluate(ev.compile(cs.DeepCache(interval=2, branch=0)))
    assert not result.valid
    assert "NaN or inf" in (result.reason or "")
    assert result.quality is None and result.psnr is None
    _no_hooks_left(ev, pre_hooks)
    monkeypatch.undo()
    assert ev.evaluate(ev.compile(cs.DeepCache(interval=2, branch=0))).valid


def test_simulated_cuda_oom_is_invalid_and_the_evaluator_keeps_working(
    ev: Evaluator, monkeypatch: pytest.MonkeyPatch
) -> None:
    pre_hooks = len(ev.denoiser._forward_pre_hooks)
    cleanups = []
    cleanup = ev.cleanup_after_failure
    monkeypatch.setattr(ev, "cleanup_after_failure", lambda: (cleanups.append(1), cleanup()))

    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(ev.denoiser, "forward", oom)
    result = ev.evaluate(ev.compile(cs.DeepCache(interval=3, branch=1)))
    assert not result.valid
    assert result.reason.startswith("CUDA out of memory") and "20.00 GiB" in result.reason
    assert cleanups  # memory is released (gc + torch.cuda.empty_cache on CUDA) before the next candidate
    _no_hooks_left(ev, pre_hooks)
    monkeypatch.undo()
    again = ev.evaluate(ev.compile(cs.DeepCache(interval=3, branch=1)))
    assert again.valid and again.quality is not None


def test_exception_inside_a_candidate_leaves_no_hooks(ev: Evaluator, monkeypatch: pytest.MonkeyPatch) -> None:
    pre_hooks, hooks = len(ev.denoiser._forward_pre_hooks), len(ev.denoiser._forward_hooks)
    mid = ev.denoiser.mid_block

    def broken(*args, **kwargs):
        raise RuntimeError("boom in mid_block")

    monkeypatch.setattr(mid, "forward", broken)
    # an empty prefix cache: this mask was evaluated before, and a resumed run would skip the steps mid_block runs
    monkeypatch.setattr(ev, "prefixes", PrefixCache(1 << 20))
    result = ev.evaluate(ev.compile(cs.DeepCache(interval=2, branch=0)))
    assert not result.valid and "RuntimeError: boom in mid_block" in result.reason
    assert getattr(ev.denoiser, "_cachesearch_applied", None) is None
    assert len(ev.denoiser._forward_pre_hooks) == pre_hooks and len(ev.denoiser._forward_hooks) == hooks
    assert "forward" not in vars(ev.denoiser)  # the prefix cache's replaying forward is gone too
    assert vars(mid)["forward"] is broken  # the applier restored exactly what it found
    monkeypatch.undo()
    _no_hooks_left(ev, pre_hooks)
    assert ev.evaluate(ev.compile(cs.Full())).quality == 0.0


def test_measured_latency_is_relative_to_full_compute_in_this_process(ev: Evaluator, monkeypatch) -> None:
    monkeypatch.setattr(ev, "config", EvalConfig(**{**ev.config.to_dict(), "latency_repeats": 2, "latency_warmup": 0}))
    result = ev.evaluate(ev.compile(cs.StepSet(count=2)), measure=True)
    assert result.valid
    base = ev.baseline_latency()
    assert base is ev.baseline_latency()  # measured once and kept
    assert result.baseline_ms == base.median_ms > 0
    assert result.latency_ms > 0 and result.speedup == pytest.approx(base.median_ms / result.latency_ms)
    assert result.latency_spread is not None and result.latency_spread >= 0
    assert result.device is not None and result.device.startswith("cpu")
    assert set(EvalResult.__dataclass_fields__) <= set(result.to_dict())


def test_schedules_for_other_models_or_samplers_are_refused(ev: Evaluator) -> None:
    tiny = tiny_sd_pipeline(blocks=3)
    foreign = cs.compile_schedule(tiny, cs.Full(), num_inference_steps=4)
    with pytest.raises(ScheduleError, match=r"model\.fingerprint: .* a different architecture"):
        ev.evaluate(foreign)
    other_guidance = cs.compile_schedule(ev.pipe, cs.Full(), num_inference_steps=4, guidance_scale=2.0)
    with pytest.raises(ScheduleError, match="guidance_scale"):
        ev.evaluate(other_guidance)
    with pytest.raises(EvalConfigError, match="split"):
        ev.prompt_set("test")


def test_invalid_results_cannot_be_exported(ev: Evaluator) -> None:
    bad = EvalResult(
        schedule="x", split="train", valid=False, reason="boom", metric=ev.metric_name, quality=None, psnr=None,
        ssim=None, accuracy=None, cost_ratio=None, latency_ms=None, baseline_ms=None, speedup=None,
        latency_spread=None, n_images=2, seconds=0.0,
    )
    with pytest.raises(ValueError, match="invalid"):
        ev.to_schedule_metrics(bad, None)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_inference_steps", 0),
        ("n_train", True),
        ("latency", "fast"),
        ("device", "tpu"),
        ("dtype", "float8"),
        ("scheduler", "magic"),
        ("guidance_scale", -1.0),
        ("height", 7),
    ],
)
def test_config_errors_name_the_field(field: str, value: object) -> None:
    with pytest.raises(EvalConfigError, match=f"EvalConfig.{field}"):
        EvalConfig(**{field: value})


def test_scheduler_option_swaps_the_sampler_and_keeps_costs_per_call() -> None:
    pipe = tiny_sd_pipeline(blocks=2)
    model = LoadedModel(pipe=pipe, denoiser=denoiser_of(pipe), source="tiny", random_weights=True, family="unet2d")
    config = EvalConfig(model="tiny", scheduler="heun", num_inference_steps=4, height=32, width=32, n_train=1)
    ev = Evaluator(config, model=model)
    assert type(ev.pipe.scheduler).__name__ == "HeunDiscreteScheduler"
    full = ev.compile(cs.Full())
    assert ev.cost_ratio(full) == pytest.approx(1.0)
    # Heun calls the denoiser 2N-1 times: 2 of 4 steps are 3 of 7 calls.
    assert ev.cost_ratio(ev.compile(cs.StepSet(count=2))) == pytest.approx(3 / 7)
    assert ev.num_calls({"num_inference_steps": 4}) == (4, 7)
    assert ev.num_calls({"num_inference_steps": 2}) == (2, 3)


# -- model knowledge comes from the denoiser's adapter ----------------------------------------------------
def _tiny_model() -> LoadedModel:
    pipe = tiny_sd_pipeline(blocks=2)
    return LoadedModel(pipe=pipe, denoiser=denoiser_of(pipe), source="tiny", random_weights=True, family="unet2d")


def test_latent_shape_default_size_and_cfg_come_from_the_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    from cachesearch.adapters import base

    model = _tiny_model()
    config = EvalConfig(model="tiny", num_inference_steps=2, n_train=2, guidance_scale=7.5)
    plain = Evaluator(config, model=model)
    assert plain.cfg and (plain.height, plain.width) == (64, 64)  # the tiny VAE halves: 32 x 32 latents
    assert tuple(plain.latents("train").shape) == (2, 4, 32, 32)

    class OddUNet(type(model.denoiser)):  # type: ignore[misc]
        pass

    class OddAdapter(UNet2DAdapter):
        family = "test-odd"

        def matches(self, denoiser: torch.nn.Module) -> bool:
            return isinstance(denoiser, OddUNet)

        def default_size(self, pipe) -> tuple[int, int]:
            return 48, 40

        def latent_shape(self, pipe, height: int, width: int) -> tuple[int, ...]:
            return 3, height // 8, width // 8

        def uses_cfg(self, pipe, guidance_scale: float) -> bool:
            return False

    odd = _tiny_model()
    odd.denoiser.__class__ = OddUNet
    # Put the throwaway adapter first (the UNet2D adapter matches any UNet); monkeypatch restores the registry.
    monkeypatch.setattr(base, "_ADAPTERS", {"test-odd": OddAdapter(), **base._ADAPTERS})
    ev = Evaluator(config, model=odd)
    assert isinstance(ev.adapter, OddAdapter)
    assert (ev.height, ev.width) == (48, 40)
    assert tuple(ev.latents("train").shape) == (2, 3, 6, 5)
    assert ev.cfg is False and ev.guidance_scale == 7.5
    size_error = r"EvalConfig\.width: 44 px is not a multiple of the latent pixel factor 8 .*; use 40 or 48"
    with pytest.raises(EvalConfigError, match=size_error):
        Evaluator(EvalConfig(model="tiny", num_inference_steps=2, n_train=1, width=44), model=odd)
    monkeypatch.undo()
    assert not isinstance(Evaluator(config, model=_tiny_model()).adapter, OddAdapter)


def test_image_size_must_be_whole_latent_pixels() -> None:
    config = EvalConfig(model="tiny", num_inference_steps=2, n_train=1, height=33, width=32)
    with pytest.raises(EvalConfigError, match=r"EvalConfig\.height: 33 px .* factor 2 of this pipeline; use 32 or 34"):
        Evaluator(config, model=_tiny_model())
