"""The runtime families (fbcache, magcache, dbcache, pab, fastercache, seacache): their trials are a library's own
cache, replayable from their parameters; families a model cannot run are dropped from shipped spaces with the
reason and refused in a user's; MagCache's calibration is diffusers' own, run once per search; a ``--space runtime``
search exports runtime schedule files, marks them in the report and tabulates each family's best."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import re
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from diffusers.hooks import MagCacheConfig

import cachesearch as cs
from cachesearch.evaluate import EvalConfig, Evaluator, magcache_ratios
from cachesearch.models._loaders import LoadedModel
from cachesearch.search.space import SpaceContext, SpaceError, drop_unavailable, find_space, load_space, parse_space
from tests._tiny_dit import tiny_guided_flux_pipeline

HAS_CACHE_DIT = importlib.util.find_spec("cache_dit") is not None
STEPS = 6


@pytest.fixture(scope="module")
def ev(tmp_path_factory):
    pipe = tiny_guided_flux_pipeline(seed=11)
    model = LoadedModel(pipe=pipe, denoiser=pipe.transformer, source="tiny:guided-flux", random_weights=True,
                        family="flux")
    config = EvalConfig(model="tiny", n_train=2, n_heldout=2, batch_size=2, num_inference_steps=STEPS, height=16,
                        width=16, guidance_scale=3.0, cache_dir=str(tmp_path_factory.mktemp("refs")))
    return Evaluator(config, model=model)


@pytest.fixture(scope="module")
def ratios(ev):
    return magcache_ratios(ev)


def test_magcache_is_calibrated_by_diffusers_own_hook(ev, ratios):
    assert ratios.loops == 2 and len(ratios.ratios) == STEPS and ratios.ratios[0] == 1.0
    shown: list[str] = []  # what diffusers' own handler would print (a run's output had every hook and ratio)
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: shown.append(record.getMessage())
    logging.getLogger("diffusers").addHandler(handler)
    try:
        assert magcache_ratios(ev).ratios == ratios.ratios  # the same again, and quietly: collected, not shown
    finally:
        logging.getLogger("diffusers").removeHandler(handler)
    assert not [m for m in shown if "MagCache" in m]
    printed = []  # by hand, as MagCache's docs say: calibrate=True, read what it prints
    ps, latents = ev.prompt_set("train"), ev.latents("train")
    ev.denoiser.enable_cache(MagCacheConfig(calibrate=True, num_inference_steps=STEPS))
    try:
        for i in range(2):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                ev.generate_batch([ps.prompts[i]], latents[i:i + 1], [ps.seeds[i]], {"num_inference_steps": STEPS})
            printed.append([float(x) for x in re.findall(r"\[(.*)\]", out.getvalue())[-1].split(",")])
    finally:
        ev.denoiser.disable_cache()
    assert ratios.ratios == tuple(sum(c) / 2 for c in zip(*printed))


def _ctx(ev, ratios):
    return SpaceContext.of(ev, mag_ratios=ratios.ratios)


def test_the_runtime_space_drops_what_cannot_run_here_and_replays_every_trial(ev, ratios):
    space, notes = drop_unavailable(load_space(find_space("runtime")), _ctx(ev, ratios))
    expected = ("fbcache", "magcache", "dbcache", "pab", "fastercache") if HAS_CACHE_DIT else (
        "fbcache", "magcache", "pab", "fastercache")
    assert space.families == expected
    assert any("seacache" in n and "no raw-vision adapter for GuidedFluxTransformer2DModel" in n for n in notes)
    resolved = space.resolve(_ctx(ev, ratios))
    baselines = resolved.baselines()
    assert {b.kind for b in baselines} == set(expected)
    for b in baselines:
        params = resolved.params_for(b.policy)
        assert params is not None, b.name
        assert resolved.suggest(optuna.trial.FixedTrial(params)) == b.policy
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(30):
        trial = study.ask()
        policy = resolved.suggest(trial)
        assert resolved.suggest(optuna.trial.FixedTrial(trial.params)) == policy  # pure: replays exactly
        assert isinstance(policy, cs.schedule.RuntimePolicy)
        study.tell(trial, 0.0)


def test_trials_compile_to_their_librarys_configs(ev, ratios):
    resolved = load_space(find_space("runtime")).without(["seacache"], "test").resolve(_ctx(ev, ratios))
    mag = ev.compile(resolved.policy_from_params({"mask.family": "magcache", "magcache.threshold": 0.1,
                                                  "magcache.max_skip_steps": 2, "magcache.retention": 0.2}))
    cfg = mag.runtime.configs["config"]
    assert cfg.method == "MagCacheConfig" and cfg.fields["num_inference_steps"] == STEPS
    assert cfg.fields["mag_ratios"] == pytest.approx(ratios.ratios, rel=1e-6)  # float32, as MagCache holds them
    faster = ev.compile(resolved.policy_from_params({"mask.family": "fastercache", "fastercache.skip": 2,
                                                     "fastercache.t_high": 700}))
    assert faster.runtime.configs["config"].fields["is_guidance_distilled"] is True  # CFG is inside the call
    assert faster.runtime.configs["config"].fields["current_timestep_callback"] == "pipeline.current_timestep"
    if HAS_CACHE_DIT:
        base = {"mask.family": "dbcache", "dbcache.fn": 1, "dbcache.bn": 1, "dbcache.threshold": 0.2,
                "dbcache.warmup": 1, "dbcache.max_cached": -1, "dbcache.max_continuous": 2}
        plain = ev.compile(resolved.policy_from_params({**base, "dbcache.taylorseer_order": 0}))
        assert plain.runtime.library == "cache-dit" and "calibrator_config" not in plain.runtime.configs
        assert plain.runtime.configs["cache_config"].fields["max_continuous_cached_steps"] == 2
        ts = ev.compile(resolved.policy_from_params({**base, "dbcache.taylorseer_order": 2}))
        assert ts.runtime.configs["calibrator_config"].fields["taylorseer_order"] == 2


def test_a_users_space_with_a_family_that_cannot_run_is_refused(ev, ratios):
    doc = {"format": "cachesearch/space@1", "name": "mine", "mask": {"families": ["fbcache", "seacache"]}}
    space = parse_space(doc, source="mine.yaml")
    assert drop_unavailable(space, _ctx(ev, ratios))[0] is space  # not a shipped space: nothing dropped
    with pytest.raises(SpaceError, match=r"mine.yaml: mask.families: family 'seacache' cannot run here: diffusers' "
                                         r"SeaCache has no raw-vision adapter"):
        space.resolve(_ctx(ev, ratios))


def test_a_unet_runs_no_runtime_family(make_evaluator):
    from cachesearch.search.space import default_space

    ev = make_evaluator()
    assert "fbcache" not in default_space(ev.space).families  # the UNet space (joint) has none
    doc = {"format": "cachesearch/space@1", "name": "mine", "mask": {"families": ["fbcache"]}}
    with pytest.raises(SpaceError, match="UNet2DConditionModel has no enable_cache"):
        parse_space(doc, source="mine.yaml").resolve(SpaceContext.of(ev))


def test_a_runtime_search_exports_runtime_files_and_each_familys_best(ev, tmp_path):
    from cachesearch.search import RunSettings, run_search
    from cachesearch.search.attrs import ATTR_MAGCACHE

    space = tmp_path / "rt.yaml"  # the shipped runtime space without the slow-to-import cache-dit family
    data = yaml.safe_load(find_space("runtime").read_text())
    data["mask"]["families"] = ["fbcache", "magcache", "pab"]
    data["mask"] = {k: v for k, v in data["mask"].items() if k in ("families", "fbcache", "magcache", "pab")}
    data["baselines"] = {"fbcache": {"thresholds": [0.1, 0.4]}, "magcache": {"thresholds": [0.24]},
                         "pab": {"skips": [2]}}
    space.write_text(yaml.safe_dump(data))
    settings = RunSettings(name="rt", model="tiny", num_steps=STEPS, n_train=2, n_heldout=2, trials=8, timeout=None,
                           population=4, seed=0, out=str(tmp_path / "runs"), workers=1, sampler="random",
                           space=str(space), screen="off")
    summary = run_search(settings, evaluator=ev, space_given=True)
    assert summary.failed == 0 and summary.completed >= 6, summary
    assert ("MagCache calibrated by diffusers' own hook over 2 sampling loop(s) of the train prompts"
            in " ".join(summary.notes))
    index = yaml.safe_load((summary.run_dir / "schedules" / "index.yaml").read_text())
    assert index["schedules"] and {e["kind"] for e in index["schedules"]} == {"runtime"}
    for e in index["schedules"]:
        sched = cs.load_schedule(summary.run_dir / "schedules" / e["file"])
        assert sched.format == "cachesearch/schedule@4" and sched.runtime.library == "diffusers"
        assert sched.metrics.latency.cost_ratio == e["cost_ratio"]
        assert e["cost_heldout"] is not None  # counted on the held-out images too
    families = {(r["family"], r["max_cost"]) for r in index["families"]}
    assert {f for f, _ in families} <= {"fbcache", "magcache", "pab"} and {c for _, c in families} == {0.3, 0.5, 0.7}
    report = (summary.run_dir / "report.md").read_text()
    assert "## Best of each family" in report and "| `fbcache` | runtime |" in report
    html = (summary.run_dir / "report.html").read_text()
    assert "decides on the device, call by call" in html  # its mask section, for a runtime file
    assert "cannot read" not in html
    picked = cs.load_front(summary.run_dir / "schedules").pick(max_cost=1.0)
    assert picked.kind == "runtime"
    with picked.applied(ev.pipe):
        images = ev.pipe(prompt=["a red circle"], num_inference_steps=STEPS, height=16, width=16,
                         guidance_scale=3.0, output_type="pt").images
    assert torch.isfinite(images).all()
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(summary.run_dir / "study.journal")))
    stored = optuna.load_study(study_name=None, storage=storage).user_attrs[ATTR_MAGCACHE]
    assert len(stored["ratios"]) == STEPS and stored["seconds"] > 0
    assert Path(summary.run_dir / "pareto.png").is_file()


@pytest.fixture(scope="module")
def wan(tmp_path_factory):
    from cachesearch.models._loaders import load_model

    loaded = load_model("arch:wan2.1-tiny")
    return Evaluator(EvalConfig(model="arch:wan2.1-tiny", n_train=1, n_heldout=1, num_inference_steps=4,
                                cache_dir=str(tmp_path_factory.mktemp("wan-refs"))), model=loaded)


def test_seacache_stays_where_diffusers_has_its_adapter(wan):
    space, notes = drop_unavailable(load_space(find_space("runtime")), SpaceContext.of(wan))
    assert "seacache" in space.families and not any("seacache" in n for n in notes)
    resolved = space.without(["magcache"], "no ratios in this test").resolve(SpaceContext.of(wan))
    sea = [b for b in resolved.baselines() if b.kind == "seacache"]
    assert [b.name for b in sea] == ["seacache-t0.1", "seacache-t0.25", "seacache-t0.5"]
    res = wan.evaluate(wan.compile(sea[-1].policy))
    assert res.valid and res.cost_ratio < 1  # it skipped work on the video model


def test_fastercache_on_separate_cfg_passes_runs_its_attention_half_only(wan):
    """Wan calls the denoiser once per CFG pass, each on a batch of one: diffusers' CFG-Cache half (which splits
    ``[uncond; cond]`` at the denoiser's input) raised IndexError in every fastercache trial of a Wan search; the
    family sets ``is_guidance_distilled`` wherever the adapter's CFG convention is not batched."""
    wan.reference("train")  # as in a search: the pipeline has run with guidance (do_classifier_free_guidance)
    assert wan.pipe.do_classifier_free_guidance
    resolved = load_space(find_space("runtime")).without(["magcache"], "no ratios in this test").resolve(
        SpaceContext.of(wan))
    faster = [b for b in resolved.baselines() if b.kind == "fastercache"]
    assert faster and all(b.policy.config.fields["is_guidance_distilled"] is True for b in faster)
    res = wan.evaluate(wan.compile(faster[0].policy))
    assert res.valid, res.reason
    assert res.cost_ratio < 1
