"""Runtime schedules: diffusers' cache hooks and cache-dit's DBCache enabled from a schedule equal enabling them by
hand, bit for bit, and after ``remove()`` the denoiser computes what it computed before (three-pass tests, as
diffusers' own cache tests). On a pipeline with batched CFG (the embedded shapes-flux construction: the guided
transformer runs ``[uncond; cond]`` in one call), on a plain FluxPipeline and on a bare transformer. Every image
starts cold; cached steps really skip (a leaf ``Linear`` inside a middle block does not run). Pipelines that run
CFG as separate passes (FLUX's true CFG, the tiny Wan): ``test_runtime_cfg_passes.py``."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import torch
from diffusers.hooks import (
    FasterCacheConfig,
    FirstBlockCacheConfig,
    MagCacheConfig,
    PyramidAttentionBroadcastConfig,
    TaylorSeerCacheConfig,
)

import cachesearch as cs
from cachesearch.runtime import fingerprint_module
from cachesearch.runtime._cache_dit import Snapshot
from tests._tiny_dit import flow_loop, pipeline_kwargs, tiny_dit_pipeline, tiny_guided_flux_pipeline, tiny_transformer

STEPS = 6
HAS_CACHE_DIT = importlib.util.find_spec("cache_dit") is not None
needs_cache_dit = pytest.mark.skipif(not HAS_CACHE_DIT, reason="cache-dit is not installed (cachesearch[cache-dit])")


def _now(pipe):
    return lambda: pipe.current_timestep


def _diffusers_configs(pipe) -> dict[str, callable]:
    """Fresh config objects (by hand and for the policy) of each diffusers method, for ``pipe``."""
    return {
        "fbcache": lambda: FirstBlockCacheConfig(threshold=0.3),
        "fbcache-reuse": lambda: FirstBlockCacheConfig(threshold=10.0),  # reuses whatever it holds: leaks show
        "magcache": lambda: MagCacheConfig(threshold=0.3, max_skip_steps=2, retention_ratio=0.2,
                                           mag_ratios=[1.0, 1.02, 0.98, 0.97, 0.96, 0.9], num_inference_steps=STEPS),
        "taylorseer": lambda: TaylorSeerCacheConfig(cache_interval=2, disable_cache_before_step=2,
                                                    taylor_factors_dtype=torch.float32),
        "pab": lambda: PyramidAttentionBroadcastConfig(spatial_attention_block_skip_range=2,
                                                       spatial_attention_timestep_skip_range=(100, 950),
                                                       current_timestep_callback=_now(pipe)),
        "fastercache": lambda: FasterCacheConfig(spatial_attention_block_skip_range=2,
                                                 spatial_attention_timestep_skip_range=(-1, 950),
                                                 is_guidance_distilled=True, current_timestep_callback=_now(pipe)),
    }


@pytest.fixture(scope="module")
def guided():
    return tiny_guided_flux_pipeline(seed=3)


def _run(pipe, prompt="a red circle", seed=0, **extra):
    kw = {**pipeline_kwargs("flux"), "num_inference_steps": STEPS, "guidance_scale": 3.0, **extra}
    return pipe(prompt=[prompt], generator=torch.Generator().manual_seed(seed), **kw).images


def _by_hand(run, enable, disable, leftovers=None):
    """``run()`` with a library's cache enabled by hand; then disabled, and what cache-dit's ``disable_cache``
    leaves patched restored from the ``leftovers`` snapshot taken before."""
    enable()
    try:
        return run()
    finally:
        disable()
        if leftovers is not None:
            leftovers.restore()


def _pipeline_by_hand(pipe, config, run, *, cache_dit: bool):
    """``run()`` with ``config`` enabled by hand on ``pipe``: cache-dit's on the pipeline itself, diffusers' on its
    transformer."""
    if cache_dit:
        import cache_dit as lib

        return _by_hand(run, lambda: lib.enable_cache(pipe, cache_config=config), lambda: lib.disable_cache(pipe),
                        Snapshot(pipe.transformer, pipe))
    return _by_hand(run, lambda: pipe.transformer.enable_cache(config), pipe.transformer.disable_cache)


def _state(model, keys: bool = False):
    """Fingerprint and child order of every module (with ``keys``, also every module's attribute names: cache-dit's
    leftovers; diffusers' own ``disable_cache`` keeps an empty hook registry and ``_cache_config = None``)."""
    return fingerprint_module(model), [(set(m.__dict__) if keys else None, list(m._modules)) for m in model.modules()]


@pytest.mark.parametrize("method", ["fbcache", "magcache", "taylorseer", "pab", "fastercache"])
def test_diffusers_cache_equals_enable_cache_by_hand_on_a_batched_cfg_pipeline(guided, method):
    make = _diffusers_configs(guided)[method]
    vanilla, before = _run(guided), _state(guided.transformer)
    sched = cs.compile_schedule(guided, cs.DiffusersCache(make()), num_inference_steps=STEPS)
    assert sched.kind == "runtime" and sched.format == "cachesearch/schedule@4"
    assert cs.schedule.parse_schedule(__import__("yaml").safe_load(sched.to_yaml())) == sched  # plain YAML round trip
    with sched.applied(guided):
        ours, again = _run(guided), _run(guided)
    assert not guided.transformer.is_cache_enabled
    removed = _run(guided)
    by_hand = _pipeline_by_hand(guided, make(), lambda: _run(guided), cache_dit=False)
    assert torch.equal(ours, by_hand)  # the library's own cache, bit for bit
    assert torch.equal(ours, again)  # the second image starts cold too
    assert torch.equal(removed, vanilla) and _state(guided.transformer) == before
    assert not torch.equal(ours, vanilla)  # it cached something


@needs_cache_dit
@pytest.mark.parametrize("calibrator", [None, 1])
def test_cache_dit_equals_enable_cache_by_hand_on_a_batched_cfg_pipeline(guided, calibrator):
    import cache_dit
    from cache_dit.caching.block_adapters.adapters import flux_adapter

    def configs():
        cal = None if calibrator is None else cache_dit.TaylorSeerCalibratorConfig(taylorseer_order=calibrator)
        return cache_dit.DBCacheConfig(Fn_compute_blocks=1, Bn_compute_blocks=0, residual_diff_threshold=0.3,
                                       max_warmup_steps=2, num_inference_steps=STEPS), cal

    vanilla, before = _run(guided), _state(guided.transformer, keys=True)
    cache, cal = configs()
    sched = cs.compile_schedule(guided, cs.CacheDiT(cache_config=cache, calibrator_config=cal),
                                num_inference_steps=STEPS)
    assert sched.runtime.library == "cache-dit" and sched.runtime.version == cache_dit.__version__
    with sched.applied(guided):
        ours, again = _run(guided), _run(guided)
    removed = _run(guided)
    assert torch.equal(removed, vanilla) and _state(guided.transformer, keys=True) == before  # nothing left behind
    cache, cal = configs()
    adapter = flux_adapter(guided)  # what a user passes for a pipeline class cache-dit's registry does not list
    by_hand = _by_hand(lambda: _run(guided),
                       lambda: cache_dit.enable_cache(adapter, cache_config=cache, calibrator_config=cal),
                       lambda: cache_dit.disable_cache(adapter),
                       Snapshot(guided.transformer, guided))  # by hand, disable_cache leaves patched forwards behind
    assert torch.equal(ours, by_hand) and torch.equal(ours, again)
    assert not torch.equal(ours, vanilla)


@needs_cache_dit
def test_cache_dit_on_a_pipeline_its_registry_lists_is_enabled_on_the_pipeline_itself():
    import cache_dit

    pipe = tiny_dit_pipeline("flux", seed=2)
    kw = {**pipeline_kwargs("flux"), "num_inference_steps": STEPS}

    def run():
        return pipe(prompt=["a blue square"], generator=torch.Generator().manual_seed(1), **kw).images

    vanilla = run()
    make = lambda: cache_dit.DBCacheConfig(Fn_compute_blocks=1, residual_diff_threshold=0.4,  # noqa: E731
                                           max_warmup_steps=1, num_inference_steps=STEPS)
    sched = cs.compile_schedule(pipe, cs.CacheDiT(cache_config=make()), num_inference_steps=STEPS)
    with sched.applied(pipe) as handle:
        assert handle._enabled is pipe
        ours = run()
    by_hand = _pipeline_by_hand(pipe, make(), run, cache_dit=True)
    assert torch.equal(ours, by_hand) and not torch.equal(ours, vanilla)


def _bare_by_hand(model, enable, disable, loops=2):
    def run():
        outs = []
        for _ in range(loops):
            outs.append(flow_loop(model, "flux", STEPS, context=True))
            if hasattr(model, "_reset_stateful_cache"):
                model._reset_stateful_cache()
        return outs

    return _by_hand(run, enable, disable)


@pytest.mark.parametrize("method", ["fbcache", "fbcache-reuse", "magcache", "taylorseer"])
def test_diffusers_cache_on_a_bare_transformer_called_once_per_step(method):
    model = tiny_transformer("flux", seed=4)
    make = _diffusers_configs(None)[method]
    vanilla, before = flow_loop(model, "flux", STEPS), _state(model)
    sched = cs.compile_schedule(model, cs.DiffusersCache(make()), num_inference_steps=STEPS)
    runs = []  # a leaf Linear of a middle block: it runs only when that block computed
    hook = model.transformer_blocks[1].ff.net[2].register_forward_hook(lambda *a: runs.append(1))
    with sched.applied(model):  # no cache_context needed: the handle enters "cond" around each call
        first = flow_loop(model, "flux", STEPS)
        computed = len(runs)
        second = flow_loop(model, "flux", STEPS)
    hook.remove()
    assert torch.equal(flow_loop(model, "flux", STEPS), vanilla) and _state(model) == before
    by_hand = _bare_by_hand(model, lambda: model.enable_cache(make()), model.disable_cache)
    assert torch.equal(first, by_hand[0]) and torch.equal(second, by_hand[1])
    # each loop starts cold: reset every STEPS calls (a cache that reuses whatever it holds would reuse the first
    # loop's stored residual at the second loop's step 0, with the same output but one computed step fewer)
    assert torch.equal(first, second) and len(runs) == 2 * computed
    assert not torch.equal(first, vanilla)


@needs_cache_dit
def test_cache_dit_on_a_bare_transformer():
    import cache_dit

    model = tiny_transformer("flux", seed=5)
    make = lambda: cache_dit.DBCacheConfig(Fn_compute_blocks=1, residual_diff_threshold=0.4,  # noqa: E731
                                           max_warmup_steps=1, num_inference_steps=STEPS)
    vanilla, before = flow_loop(model, "flux", STEPS), _state(model, keys=True)
    sched = cs.compile_schedule(model, cs.CacheDiT(cache_config=make()), num_inference_steps=STEPS)
    with sched.applied(model):
        first, second = flow_loop(model, "flux", STEPS), flow_loop(model, "flux", STEPS)
    assert torch.equal(flow_loop(model, "flux", STEPS), vanilla) and _state(model, keys=True) == before
    by_hand = _by_hand(lambda: flow_loop(model, "flux", STEPS),
                       lambda: cache_dit.enable_cache(model, cache_config=make()),
                       lambda: cache_dit.disable_cache(model))
    assert torch.equal(first, by_hand) and torch.equal(first, second) and not torch.equal(first, vanilla)


def test_a_cached_step_does_not_run_the_middle_blocks(guided):
    """FirstBlockCache at a high threshold: after step 0 the first block decides the rest is cached; a leaf Linear
    inside the last double block (not a wrapper) runs only on the computed steps."""
    calls = []
    leaf = guided.transformer.transformer_blocks[1].ff.net[2]
    assert isinstance(leaf, torch.nn.Linear)
    h = leaf.register_forward_hook(lambda *a: calls.append(1))
    try:
        sched = cs.compile_schedule(guided, cs.DiffusersCache(FirstBlockCacheConfig(threshold=10.0)),
                                    num_inference_steps=STEPS)
        with sched.applied(guided):
            _run(guided)
            computed = len(calls)
            _run(guided)
    finally:
        h.remove()
    assert computed == 1  # step 0 only (nothing to compare the first block with yet)
    assert len(calls) == 2  # the second image started cold: its step 0 computed again


def test_a_call_that_fails_half_way_does_not_leak_state_into_the_next(guided):
    """A call stopped after step 2 leaves the library's state behind (diffusers resets it only after a call that
    returned): FirstBlockCache at a threshold that reuses whatever it holds would reuse the stale residual at the
    next call's step 0 (the handle resets when the pipeline sets its timesteps)."""
    config = FirstBlockCacheConfig(threshold=10.0)
    sched = cs.compile_schedule(guided, cs.DiffusersCache(config), num_inference_steps=STEPS)

    def stop(pipe, i, t, kw):
        if i == 2:
            raise KeyboardInterrupt
        return kw

    with sched.applied(guided):
        clean = _run(guided, prompt="a green star")
        with pytest.raises(KeyboardInterrupt):
            _run(guided, prompt="a red circle", callback_on_step_end=stop)
        after = _run(guided, prompt="a green star")
    assert torch.equal(clean, after)


def test_sampler_with_another_step_count_is_refused(guided):
    sched = cs.compile_schedule(guided, cs.DiffusersCache(FirstBlockCacheConfig(threshold=0.3)),
                                num_inference_steps=STEPS)
    with sched.applied(guided), pytest.raises(cs.ScheduleError, match="has 6 steps but the sampler was set up for 4"):
        _run(guided, num_inference_steps=4)
    assert not guided.transformer.is_cache_enabled


def test_fingerprint_is_checked_and_stacking_is_refused(guided):
    sched = cs.compile_schedule(guided, cs.DiffusersCache(FirstBlockCacheConfig(threshold=0.3)),
                                num_inference_steps=STEPS)
    other = tiny_transformer("flux", seed=0)
    info = cs.schedule.ModelInfo(family="flux", cls="X", fingerprint="sha256:" + "0" * 64, source="x")
    other_sched = sched.with_updates(model=info)
    with pytest.raises(cs.ScheduleError, match="model.fingerprint"):
        other_sched.apply(other)
    with sched.applied(guided), pytest.raises(cs.ScheduleError, match="already applied"):
        sched.apply(guided)
    assert not guided.transformer.is_cache_enabled


def test_bad_values_name_the_field(guided):
    with pytest.raises(cs.ScheduleError, match=r"policy\.config\.threshold: expected a number >= 0"):
        cs.DiffusersCache(FirstBlockCacheConfig(threshold=-0.1))
    with pytest.raises(cs.ScheduleError, match=r"policy\.config\.method: 'NoSuchCacheConfig' is not a config of "
                                               r"diffusers 0\.42"):
        cs.compile_schedule(guided, cs.DiffusersCache({"method": "NoSuchCacheConfig"}), num_inference_steps=STEPS)
    with pytest.raises(cs.ScheduleError, match=r"policy\.config\.treshold: FirstBlockCacheConfig of diffusers \S+ has "
                                               r"no field 'treshold'; its fields: \['threshold'\]"):
        cs.compile_schedule(guided, cs.DiffusersCache({"method": "FirstBlockCacheConfig", "treshold": 0.1}),
                            num_inference_steps=STEPS)
    with pytest.raises(cs.ScheduleError, match=r"policy\.config\.threshold: expected a number, got 'high'"):
        cs.DiffusersCache({"method": "FirstBlockCacheConfig", "threshold": "high"})
    with pytest.raises(cs.ScheduleError, match=r"policy\.config\.alpha_low_frequency: expected float, got 'x'"):
        cs.compile_schedule(guided, cs.DiffusersCache({"method": "FasterCacheConfig", "alpha_low_frequency": "x"}),
                            num_inference_steps=STEPS)
    with pytest.raises(cs.ScheduleError, match=r"policy\.config\.attention_weight_callback: a callable"):
        cs.DiffusersCache(FasterCacheConfig(attention_weight_callback=lambda m: 0.3))
    with pytest.raises(cs.ScheduleError, match=r"policy\.config\.num_inference_steps: 28, but the schedule has 6"):
        cs.compile_schedule(guided, cs.DiffusersCache({"method": "MagCacheConfig", "num_inference_steps": 28,
                                                       "mag_ratios": [1.0] * 28}), num_inference_steps=STEPS)
    with pytest.raises(cs.ScheduleError, match="current_timestep_callback.*bare denoiser"):
        cs.compile_schedule(tiny_transformer("flux"), cs.DiffusersCache(_diffusers_configs(guided)["pab"]()),
                            num_inference_steps=STEPS)


@needs_cache_dit
def test_bad_cache_dit_values_name_the_field():
    import cache_dit

    model = tiny_transformer("flux", seed=0)

    def compile_(cache, calibrator=None):
        return cs.compile_schedule(model, cs.CacheDiT(cache_config=cache, calibrator_config=calibrator),
                                   num_inference_steps=STEPS)

    with pytest.raises(cs.ScheduleError, match=r"policy\.cache_config\.residual_diff_threshold: expected a number "
                                               r">= 0\.0, got -0\.1"):
        cs.CacheDiT(cache_config=cache_dit.DBCacheConfig(residual_diff_threshold=-0.1))
    with pytest.raises(cs.ScheduleError, match=r"policy\.cache_config\.max_warmup_steps: expected a number >= 0"):
        compile_({"method": "DBCacheConfig", "max_warmup_steps": -3})
    with pytest.raises(cs.ScheduleError, match=r"policy\.cache_config\.method: 'NoSuchCacheConfig' is not a "
                                               r"cache_config of cache-dit \S+; expected one of \[.*'DBCacheConfig'"):
        compile_({"method": "NoSuchCacheConfig"})
    with pytest.raises(cs.ScheduleError, match=r"policy\.cache_config\.Fn_compute_block: DBCacheConfig of cache-dit "
                                               r"\S+ has no field 'Fn_compute_block'; its fields: \[.*"
                                               r"'Fn_compute_blocks'"):
        compile_({"method": "DBCacheConfig", "Fn_compute_block": 1})
    with pytest.raises(cs.ScheduleError, match=r"policy\.calibrator_config\.taylorseer_ordr: "
                                               r"TaylorSeerCalibratorConfig of cache-dit \S+ has no field"):
        compile_({"method": "DBCacheConfig"}, {"method": "TaylorSeerCalibratorConfig", "taylorseer_ordr": 1})
    with pytest.raises(cs.ScheduleError, match=r"policy\.calibrator_config\.method: 'NoCal' is not a "
                                               r"calibrator_config of cache-dit"):
        compile_({"method": "DBCacheConfig"}, {"method": "NoCal"})


def test_a_denoiser_without_enable_cache_is_refused_with_the_reason():
    sd3 = tiny_transformer("sd3")
    with pytest.raises(cs.ScheduleError, match="SD3Transformer2DModel has no enable_cache"):
        cs.compile_schedule(sd3, cs.DiffusersCache(FirstBlockCacheConfig()), num_inference_steps=STEPS)


def test_a_missing_library_names_the_extra_to_install(monkeypatch):
    import importlib

    real = importlib.import_module

    def fake(name, *a, **k):
        if name == "cache_dit":
            raise ModuleNotFoundError("No module named 'cache_dit'", name="cache_dit")
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", fake)
    policy = cs.CacheDiT(cache_config={"method": "DBCacheConfig", "residual_diff_threshold": 0.1})
    with pytest.raises(cs.ScheduleError, match=r"cache-dit is not installed; install it: "
                                               r"pip install 'cachesearch\[cache-dit\]'"):
        cs.compile_schedule(tiny_transformer("flux"), policy, num_inference_steps=STEPS)


def test_import_cachesearch_does_not_import_cache_dit():
    code = "import sys, cachesearch; print('cache_dit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@needs_cache_dit
def test_the_v4_golden_file_records_what_compile_records_for_its_policy():
    from pathlib import Path

    golden = cs.load_schedule(Path(__file__).parents[1] / "schedule" / "golden" / "v4_dbcache.yaml")
    model = tiny_transformer("flux", seed=0)
    again = cs.compile_schedule(model, cs.schedule.policy_from_dict(golden.policy), num_inference_steps=8)
    assert again.runtime == golden.runtime and again.model.fingerprint == golden.model.fingerprint


def test_a_file_field_the_installed_library_lacks_is_refused_on_apply(guided):
    from cachesearch.runtime import check_installed_runtime
    from cachesearch.schedule import LibraryConfig, RuntimeCache

    sched = cs.compile_schedule(guided, cs.DiffusersCache(FirstBlockCacheConfig(threshold=0.3)),
                                num_inference_steps=STEPS)
    runtime = RuntimeCache(library="diffusers", version="0.42.1", configs={"config": LibraryConfig(
        method="FirstBlockCacheConfig", fields={"threshold": 0.3, "warmup_steps": 2})})
    message = r"runtime\.config\.warmup_steps: FirstBlockCacheConfig of diffusers \S+ has no field 'warmup_steps'"
    with pytest.raises(cs.ScheduleError, match=message):
        check_installed_runtime(runtime)
    with pytest.raises(cs.ScheduleError, match=message):
        sched.with_updates(runtime=runtime).apply(guided)
    assert not guided.transformer.is_cache_enabled


def _partial_loop(model, calls: int) -> None:
    from tests._tiny_dit import dit_inputs

    inputs = dit_inputs("flux", 1, 0)
    x = inputs.pop("hidden_states")
    with torch.no_grad():
        for _ in range(calls):
            model(hidden_states=x, timestep=torch.tensor([0.5]), return_dict=False, **inputs)


@pytest.mark.parametrize("method", ["fbcache", "dbcache"])
def test_reset_starts_a_bare_denoisers_loop_cold_after_a_partial_one(method):
    if method == "dbcache" and not HAS_CACHE_DIT:
        pytest.skip("cache-dit is not installed")
    model = tiny_transformer("flux", seed=8)
    if method == "fbcache":
        policy = cs.DiffusersCache(FirstBlockCacheConfig(threshold=0.3))
    else:
        policy = cs.CacheDiT(cache_config={"method": "DBCacheConfig", "Fn_compute_blocks": 1,
                                           "residual_diff_threshold": 0.4, "max_warmup_steps": 1})
    sched = cs.compile_schedule(model, policy, num_inference_steps=STEPS)
    with sched.applied(model) as handle:
        clean = flow_loop(model, "flux", STEPS)
        _partial_loop(model, 3)  # a loop stopped half-way: its state must not reach the next one
        handle.reset()
        after = flow_loop(model, "flux", STEPS)
    assert torch.equal(clean, after)


def test_a_context_the_caller_enters_is_kept_across_loops():
    """A caller that wraps its loops in ``cache_context("uncond")`` keeps that context, also when the handle resets
    the state at a loop boundary (diffusers' reset clears the context)."""
    model = tiny_transformer("flux", seed=9)
    sched = cs.compile_schedule(model, cs.DiffusersCache(FirstBlockCacheConfig(threshold=0.3)),
                                num_inference_steps=STEPS)
    seen = []
    hook = model.transformer_blocks[0].register_forward_pre_hook(
        lambda m, a: seen.append(m._diffusers_hook.hooks["fbc_leader_block_hook"].state_manager._context.name))
    try:
        with sched.applied(model), model.cache_context("uncond"):
            first, second = flow_loop(model, "flux", STEPS), flow_loop(model, "flux", STEPS)
    finally:
        hook.remove()
    assert seen == ["uncond"] * (2 * STEPS)
    assert torch.equal(first, second)
