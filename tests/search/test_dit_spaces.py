"""Search spaces for transformer denoisers: the families taylorseer, middle and components on the tiny FLUX
pipeline, ECAD's binary form, the default space by denoiser family, and the refusals on a UNet."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml
from optuna.trial import FixedTrial, TrialState

import cachesearch as cs
from cachesearch.evaluate import EvalConfig
from cachesearch.models import block_space
from cachesearch.models._loaders import LoadedModel
from cachesearch.schedule import (
    BlockInfo,
    BlockKind,
    BlockMask,
    BlockProfile,
    BlockSpace,
    Joint,
    MiddleCache,
    MiddleCacheAuto,
    PeriodicMask,
    StepSet,
    TaylorSeer,
)
from cachesearch.search import SpaceContext, SpaceError, default_space, find_space, load_space, parse_space
from cachesearch.search.space.families import ComponentsFamily, MiddleAutoFamily, MiddleFamily, TaylorSeerFamily
from tests._tiny_dit import FAMILIES, pipeline_kwargs, tiny_dit_pipeline, tiny_transformer
from tests.search.conftest import FakeEvaluator

STEPS = 6
HAS_CACHE_DIT = importlib.util.find_spec("cache_dit") is not None
UNET_STAGES = ("down_blocks.0", "mid_block", "up_blocks.0")


@pytest.fixture(scope="module")
def flux() -> Any:
    torch.set_num_threads(1)
    return tiny_dit_pipeline("flux")


class _Sampler:
    """The part of an evaluator :meth:`SpaceContext.of` reads."""

    def __init__(self, pipe: Any, steps: int = STEPS) -> None:
        self.pipe, self.space, self.num_inference_steps = pipe, block_space(pipe.transformer), steps


def _profile(space: BlockSpace, steps: int = STEPS) -> BlockProfile:
    stages = space.names(BlockKind.STAGE)
    return BlockProfile(blocks=stages, changes=tuple(tuple(0.0 if s == 0 else 0.1 * (i + 1) for s in range(steps))
                                                     for i in range(len(stages))))


def flux_ctx(pipe: Any, steps: int = STEPS) -> SpaceContext:
    ev = _Sampler(pipe, steps)
    return SpaceContext.of(ev, _profile(ev.space, steps), "p")  # type: ignore[arg-type]


def unet_ctx() -> SpaceContext:
    profile = BlockProfile(blocks=UNET_STAGES, changes=tuple((0.0,) + (0.1,) * (STEPS - 1) for _ in UNET_STAGES))
    return SpaceContext(num_steps=STEPS, scheduler="DDIMScheduler", accepts_timesteps=False, stages=UNET_STAGES,
                        blocks=UNET_STAGES, n_branches=2, profile=profile, profile_id="p", family="unet2d",
                        transformer=False,
                        components=("up_blocks.0.attentions.0.transformer_blocks.0.attn1",),
                        attention=("up_blocks.0.attentions.0.transformer_blocks.0.attn1",))


def doc(mask: dict, **top: Any) -> dict:
    return {"format": "cachesearch/space@1", "name": "t", "mask": mask, "baselines": [], **top}


def compile_(pipe: Any, policy: Any, steps: int = STEPS) -> cs.Schedule:
    return cs.compile_schedule(pipe, policy, num_inference_steps=None if policy.step_set() else steps)


# -- the context and the default space ------------------------------------------------------------------------
def test_flux_context_knows_components_and_refuses_timesteps(flux) -> None:
    ctx = flux_ctx(flux)
    assert ctx.transformer and ctx.family == "flux"
    assert ctx.stages == ("transformer_blocks.0", "transformer_blocks.1", "single_transformer_blocks.0",
                          "single_transformer_blocks.1")
    assert len(ctx.components) == 12 and ctx.attention == tuple(c for c in ctx.components if c.endswith(".attn"))
    # FlowMatchEuler's set_timesteps takes timesteps=, FluxPipeline.__call__ does not (sigmas= only)
    assert not ctx.accepts_timesteps


@pytest.mark.parametrize("family", FAMILIES)
def test_default_space_is_dit_for_transformers_and_joint_for_unets(family) -> None:
    space = default_space(block_space(tiny_transformer(family)))
    assert space.name == "dit" and space.families == ("none", "taylorseer", "middle", "middleauto", "components",
                                                   "blockcaching", "fbcache", "magcache", "dbcache", "pab",
                                                   "fastercache")
    assert space.text == find_space("dit").read_text()  # the shipped file itself (nothing dropped)
    unet = BlockSpace(family="unet2d", blocks=tuple(BlockInfo(name=s, kind=BlockKind.STAGE, role="stage")
                                                    for s in UNET_STAGES))
    joint = default_space(unet)
    assert joint.name == "joint" and "deepcache" not in joint.families
    first = joint.text.splitlines()[0]
    assert first == "# search_spaces/joint.yaml without deepcache: this denoiser (unet2d) cannot run deepcache"


# -- each family on the tiny FLUX pipeline ------------------------------------------------------------------
def test_taylorseer_family_compiles_to_forecasts_of_the_attention_modules(flux) -> None:
    ctx = flux_ctx(flux)
    resolved = load_space(find_space("dit")).resolve(ctx)
    params = {"steps.count": STEPS, "mask.family": "taylorseer", "taylorseer.interval": 2,
              "taylorseer.warmup": 1, "taylorseer.order": 2}
    policy = resolved.suggest(FixedTrial(params))
    assert policy == TaylorSeer(interval=2, warmup=1, order=2)
    sched = compile_(flux, policy)
    assert sched.reuse.value == "taylor" and set(sched.masks()) == set(ctx.attention)
    assert sched.masks()[ctx.attention[0]] == "R.R.R."  # diffusers: (s - warmup - 1) % interval == 0
    fewer = resolved.suggest(FixedTrial({**params, "steps.count": 4}))  # combined with fewer steps
    assert fewer == Joint(steps=StepSet(count=4), mask=policy) and compile_(flux, fewer).num_steps == 4


def test_middle_family_caches_the_middle_of_the_stack_and_fits_front_and_back(flux) -> None:
    ctx = flux_ctx(flux)
    resolved = load_space(find_space("dit")).resolve(ctx)
    params = {"steps.count": STEPS, "mask.family": "middle", "middle.interval": 3, "middle.front": 1,
              "middle.back": 1, "middle.warmup": 0}
    sched = compile_(flux, resolved.suggest(FixedTrial(params)))
    assert sched.reuse.value == "residual"
    assert sched.masks() == {"transformer_blocks.1": "R..R..", "single_transformer_blocks.0": "R..R.."}
    # front 2 + back 2 leave no middle block of 4: back shrinks (a pure function of the parameters)
    both = resolved.suggest(FixedTrial({**params, "middle.front": 2, "middle.back": 2}))
    assert both == MiddleCache(interval=3, front=2, back=1)
    assert list(compile_(flux, both).masks()) == ["single_transformer_blocks.0"]


def test_middleauto_family_recomputes_the_middle_where_the_profile_adds_up(flux) -> None:
    ctx = flux_ctx(flux)  # stage i changes 0.1 * (i + 1) per step: the middle of front 1, back 0 averages 0.3
    resolved = load_space(find_space("dit")).resolve(ctx)
    params = {"steps.count": 4, "mask.family": "middleauto", "middleauto.threshold": 0.65, "middleauto.front": 1,
              "middleauto.back": 0, "middleauto.warmup": 0, "middleauto.max_skip": 0, "middleauto.order": 0,
              "middleauto.forecast_gap": 1}
    policy = resolved.suggest(FixedTrial(params))
    assert policy == MiddleCacheAuto(threshold=0.65, front=1, back=0, profile_id="p")
    assert policy.profile is ctx.profile and policy.step_set() is None  # the reference steps, whatever steps.count
    sched = compile_(flux, policy)
    middle = ["transformer_blocks.1", "single_transformer_blocks.0", "single_transformer_blocks.1"]
    assert sched.reuse.value == "residual" and sched.masks() == {b: "R..R.." for b in middle}  # 0.3, 0.6, 0.9 > t
    skip1 = compile_(flux, resolved.suggest(FixedTrial({**params, "middleauto.max_skip": 1})))
    assert set(skip1.masks().values()) == {"R.R.R."}  # at most one reused step in a row
    warm = compile_(flux, resolved.suggest(FixedTrial({**params, "middleauto.warmup": 2})))
    assert set(warm.masks().values()) == {"RR..R."}
    # the same masks as the uniform stack cache give the same images, bit for bit
    uniform = compile_(flux, MiddleCache(interval=2, front=1, back=0))
    assert uniform.masks() == skip1.masks()
    images = []
    for sch in (skip1, uniform):
        with sch.applied(flux):
            images.append(flux("a red circle", num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0),
                               **pipeline_kwargs("flux")).images)
    assert torch.equal(images[0], images[1])
    # a forecast covers at most forecast_gap reused steps in a row (residual reuse is not limited by it)
    taylor = compile_(flux, resolved.suggest(FixedTrial({**params, "middleauto.order": 2,
                                                          "middleauto.forecast_gap": 2})))
    assert taylor.reuse.value == "taylor" and taylor.taylor_order == 2 and taylor.masks() == sched.masks()
    near = resolved.suggest(FixedTrial({**params, "middleauto.order": 2}))
    assert near.max_skip == 1 and compile_(flux, near).masks() == skip1.masks()
    assert resolved.params_for(policy) == params
    assert resolved.params_for(near) == {**params, "middleauto.order": 2, "middleauto.max_skip": 1}
    assert resolved.params_for(MiddleCacheAuto(threshold=0.65, order=2, profile=ctx.profile)) is None  # no limit
    # baselines: thresholds 0.08-0.2 recompute every step on this profile (0.3 a step): only t=0.3 is kept; its
    # forecasting twin within the gap limit; in FirstBlockCache's layout, then in MagCache's (no front block)
    assert [b.name for b in resolved.baselines() if b.kind == "middleauto"] == [
        "middleauto-t0.3-f1-b0", "middleauto-t0.3-f1-b0-s1-o1", "middleauto-t0.3-f0-b0", "middleauto-t0.3-f0-b0-s1-o1"]
    old = parse_space(doc({"families": ["middleauto"]})).resolve(ctx)  # a space without forecast_gap: no limit
    unlimited = old.suggest(FixedTrial({k: v for k, v in {**params, "middleauto.order": 2}.items()
                                        if k != "middleauto.forecast_gap"}))
    assert unlimited.max_skip == 0 and compile_(flux, unlimited).masks() == sched.masks()


def test_middleauto_guard_is_a_dimension_of_its_own_for_forecasts(flux) -> None:
    ctx = flux_ctx(flux)
    mask = {"families": ["middleauto"], "middleauto": {"order": {"low": 0, "high": 2}, "guard": {"low": 0, "high": 1}}}
    resolved = parse_space(doc(mask)).resolve(ctx)
    params = {"steps.count": 4, "mask.family": "middleauto", "middleauto.threshold": 0.65, "middleauto.front": 1,
              "middleauto.back": 0, "middleauto.warmup": 0, "middleauto.max_skip": 0, "middleauto.order": 2,
              "middleauto.guard": 1}
    guarded = resolved.suggest(FixedTrial(params))
    assert guarded.guard and guarded.default_name(STEPS).endswith("-o2-g")
    sched = compile_(flux, guarded)
    assert sched.taylor_guard and sched.policy["guard"] is True
    plain = resolved.suggest(FixedTrial({**params, "middleauto.guard": 0}))
    assert not plain.guard and not compile_(flux, plain).taylor_guard and "guard" not in plain.to_dict()
    assert resolved.params_for(guarded) == {k: v for k, v in params.items() if k.startswith("middleauto.")}
    residual = resolved.suggest(FixedTrial({**params, "middleauto.order": 0}))  # no forecast: nothing to guard
    assert not residual.guard and compile_(flux, residual).reuse.value == "residual"
    without = parse_space(doc({"families": ["middleauto"]})).resolve(ctx)  # a space without the dimension
    assert without.params_for(guarded) is None
    with pytest.raises(SpaceError, match=r"^<space>: mask.middleauto.guard: expected 0 \(no guard\) or 1"):
        parse_space(doc({"families": ["middleauto"], "middleauto": {"guard": {"low": 0, "high": 2}}}))


@pytest.mark.parametrize("groups", ["kinds", "components"])
def test_components_family_periodic_form_masks_every_component(flux, groups) -> None:
    ctx = flux_ctx(flux)
    space = parse_space(doc({"families": ["components"], "components": {"groups": groups}}))
    resolved = space.resolve(ctx)
    n_groups = 6 if groups == "kinds" else 12  # attn/ff/ff_context, proj_mlp/attn/proj_out
    assert len(resolved.param_names) == 4 * n_groups
    params = {}
    for i, name in enumerate(resolved.param_names):
        key = name.rsplit(".", 1)[1]
        params[name] = {"period": 2 + i // 4 % 2, "phase": 0, "start": 0.0, "end": 1.0}[key]
    policy = resolved.suggest(FixedTrial(params))
    assert isinstance(policy, PeriodicMask)
    masks = compile_(flux, policy).masks()
    assert list(masks) == list(ctx.components) and all(m[0] == "R" and "." in m for m in masks.values())
    if groups == "kinds":  # one kind, one mask: the attn of both double-stream blocks
        assert masks["transformer_blocks.0.attn"] == masks["transformer_blocks.1.attn"] == "R.R.R."
        assert masks["transformer_blocks.0.ff"] == "R..R.."
    assert resolved.params_for(policy) is not None


def test_ecad_trial_mask_equals_its_binary_parameters(flux) -> None:
    ctx = flux_ctx(flux)
    resolved = load_space(find_space("ecad")).resolve(ctx)
    assert len(resolved.param_names) == 12 * (STEPS - 1)
    assert any("60 parameters" in n for n in resolved.notes)
    study = optuna.create_study(directions=["minimize"] * 2, sampler=optuna.samplers.NSGAIISampler(seed=1))
    for _ in range(3):
        trial = study.ask()
        policy = resolved.suggest(trial)
        assert isinstance(policy, BlockMask)
        masks = compile_(flux, policy).masks()
        assert list(masks) == list(ctx.components)
        for c, m in masks.items():
            assert m[0] == "R"  # step 0 always recomputes: nothing is cached yet
            assert [int(ch == "R") for ch in m[1:]] == [trial.params[f"components.{c}.s{k}"] for k in range(1, STEPS)]
        assert resolved.suggest(FixedTrial(trial.params)) == policy
        study.tell(trial, [0.0, 1.0])
    # ECAD fixes the steps: the binary form runs the reference steps even in a space with a step set
    assert resolved.space.steps is None and resolved.space.masks["components"].reference_steps


def test_baselines_of_the_transformer_spaces_replay(flux) -> None:
    ctx = flux_ctx(flux)
    for name in ("dit", "ecad"):
        resolved = load_space(find_space(name)).resolve(ctx)
        items = resolved.baselines()
        kinds = {b.kind for b in items}
        # the runtime families' (magcache's need the run's calibrated ratios, which this context has not)
        runtime = {"fbcache", "pab", "fastercache"} | ({"dbcache"} if HAS_CACHE_DIT else set())
        assert kinds == ({"steps", "taylorseer", "middle", "middleauto", "components", "blockcaching"} | runtime
                         if name == "dit" else {"components"})
        for b in items:
            if b.kind == "steps" and b.policy.count < 4:  # dit.yaml: at least 4 steps
                assert resolved.params_for(b.policy) is None
                continue
            params = resolved.params_for(b.policy)
            assert params is not None, b.name
            replayed = resolved.suggest(FixedTrial(params))  # runtime baselines replay exactly too
            assert replayed == b.policy or b.kind == "blockcaching", b.name
    names = [b.name for b in load_space(find_space("dit")).resolve(ctx).baselines() if b.kind == "taylorseer"]
    assert names[:2] == ["taylorseer-n2-w3-o1", "taylorseer-n2-w3-o2"]


def test_a_schedule_of_each_family_runs_the_pipeline(flux) -> None:
    ctx = flux_ctx(flux)
    resolved = load_space(find_space("dit")).resolve(ctx)
    ecad = load_space(find_space("ecad")).resolve(ctx)
    fams = {b.kind: b.policy for b in resolved.baselines()
            if b.kind in ("taylorseer", "middle", "middleauto", "components")}
    assert set(fams) == {"taylorseer", "middle", "middleauto", "components"}
    fams["ecad"] = ecad.baselines()[0].policy
    for kind, policy in fams.items():
        sched = compile_(flux, policy)
        g = torch.Generator().manual_seed(0)
        with sched.applied(flux):
            out = flux("a red circle", num_inference_steps=STEPS, generator=g, **pipeline_kwargs("flux")).images
        assert torch.isfinite(out).all(), kind


# -- refusals -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["taylorseer", "middle", "middleauto", "components"])
def test_transformer_families_refuse_a_unet_naming_the_field(family) -> None:
    space = parse_space(doc({"families": ["none", family]}, steps={"count": {"low": 2, "high": "steps"}}),
                        source="s.yaml")
    with pytest.raises(SpaceError) as info:
        space.resolve(unet_ctx())
    msg = str(info.value)
    assert msg.startswith("s.yaml: mask.families: ") and f"family {family!r}" in msg and "unet2d" in msg
    cls = {"taylorseer": TaylorSeerFamily, "middle": MiddleFamily, "middleauto": MiddleAutoFamily,
           "components": ComponentsFamily}[family]
    assert not cls.supports(BlockSpace(family="unet2d", blocks=(BlockInfo(name="mid_block", kind=BlockKind.STAGE,
                                                                          role="stage"),)))


def test_the_transformer_spaces_refuse_a_unet() -> None:
    with pytest.raises(SpaceError, match="dit.yaml: mask.families: family 'taylorseer' caches .* unet2d"):
        load_space(find_space("dit")).resolve(unet_ctx())
    with pytest.raises(SpaceError, match="ecad.yaml: mask.families: family 'components' caches .* unet2d"):
        load_space(find_space("ecad")).resolve(unet_ctx())


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        ({"families": ["taylorseer"], "taylorseer": {"order": {"low": 1, "high": 3}}},
         "mask.taylorseer.order: TaylorSeer forecasts with order 1 or 2"),
        ({"families": ["taylorseer"], "taylorseer": {"blocks": "every"}}, "mask.taylorseer.blocks: expected one of"),
        ({"families": ["components"], "components": {"form": "dense"}}, "mask.components.form: expected one of"),
        ({"families": ["components"], "components": {"groups": "blocks"}},
         "mask.components.groups: expected one of"),
        ({"families": ["middle"], "middle": {"front": {"low": -1, "high": 2}}},
         "mask.middle.front.low: expected an integer >= 0"),
        ({"families": ["middleauto"], "middleauto": {"threshold": {"low": 0, "high": 1}}},
         "mask.middleauto.threshold.low: expected a number > 0.0"),
        ({"families": ["middleauto"], "middleauto": {"max_skip": -1}}, "mask.middleauto.max_skip: expected an integer"),
        ({"families": ["middleauto"], "middleauto": {"order": {"low": 0, "high": 3}}},
         "mask.middleauto.order: expected 0 .residual reuse., 1 or 2 .Taylor order.: got up to 3"),
    ],
)
def test_invalid_transformer_sections_name_the_field(mask, message) -> None:
    with pytest.raises(SpaceError, match=message.replace("(", r"\(")):
        parse_space(doc(mask), source="s.yaml")


def test_model_specific_checks_name_the_field(flux) -> None:
    ctx = flux_ctx(flux)
    bad = doc({"families": ["components"], "components": {"components": ["transformer_blocks.attn", "mlp"]}})
    with pytest.raises(SpaceError, match=r"mask.components.components\[1\]: unknown component 'mlp'; .* kinds"):
        parse_space(bad, source="s.yaml").resolve(ctx)
    wide = doc({"families": ["middle"], "middle": {"back": {"low": 0, "high": 4}}})
    with pytest.raises(SpaceError, match=r"mask.middle.back.high: 4 is too large: .*stack has 4 blocks"):
        parse_space(wide, source="s.yaml").resolve(ctx)
    picked = doc({"families": ["components"], "components": {"components": ["transformer_blocks.ff",
                                                                            "single_transformer_blocks.1.attn"]}})
    resolved = parse_space(picked).resolve(ctx)
    assert {n.rsplit(".", 1)[0] for n in resolved.param_names} == {"components.transformer_blocks.ff",
                                                                    "components.single_transformer_blocks.attn"}


# -- a run on the tiny FLUX pipeline --------------------------------------------------------------------------
def test_a_run_without_space_uses_dit_and_records_it(flux, settings, tmp_path: Path) -> None:
    from cachesearch.search import run_search

    model = LoadedModel(pipe=flux, denoiser=flux.transformer, source="tiny:flux", random_weights=True,
                        family="flux")
    ev = FakeEvaluator(EvalConfig(model="tiny", num_inference_steps=8, n_train=2, n_heldout=2, height=16, width=16,
                                  cache_dir=str(tmp_path / "cache")), model)
    s = settings(trials=40, sampler="random")
    run_search(s, evaluator=ev, export=False)
    run_yaml = yaml.safe_load((s.run_dir / "run.yaml").read_text())
    assert run_yaml["settings"]["space"] == "dit" and run_yaml["study"]["space"] == "dit"
    assert (s.run_dir / "space.yaml").read_text() == find_space("dit").read_text()
    study = optuna.load_study(study_name=None, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(s.run_dir / "study.journal"))))
    trials = study.get_trials()
    assert not [t for t in trials if t.state == TrialState.FAIL]
    kinds = {t.params.get("mask.family") for t in trials}
    assert {"taylorseer", "middle", "components", "blockcaching", "none"} <= kinds
