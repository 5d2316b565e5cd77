"""Search spaces: file format and validation, the pure trial → policy map, baselines as parameters."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import FixedTrial

from cachesearch.schedule import BlockCachingAuto, BlockProfile, DeepCache, Full, Joint, PeriodicMask, StepSet
from cachesearch.search import SpaceContext, SpaceError, builtin_space_names, find_space, load_space, parse_space

REPO = Path(__file__).resolve().parents[2]
STAGES = ("down_blocks.0", "down_blocks.1", "mid_block", "up_blocks.0", "up_blocks.1")
PROFILE = BlockProfile(blocks=STAGES, changes=tuple(tuple(0.0 if s == 0 else 0.05 * (i + 1) for s in range(10))
                                                    for i in range(len(STAGES))))


def ctx(accepts_timesteps: bool = True, num_steps: int = 10) -> SpaceContext:
    return SpaceContext(num_steps=num_steps, scheduler="DPMSolverMultistepScheduler" if accepts_timesteps
                        else "DDIMScheduler", accepts_timesteps=accepts_timesteps, stages=STAGES,
                        blocks=STAGES + ("up_blocks.1.resnets.0",), n_branches=6, profile=PROFILE, profile_id="p")


DIT_STAGES = ("transformer_blocks.0", "transformer_blocks.1", "single_transformer_blocks.0")
DIT_COMPONENTS = tuple(f"transformer_blocks.{i}.{c}" for i in range(2) for c in ("attn", "ff", "ff_context")) + tuple(
    f"single_transformer_blocks.0.{c}" for c in ("proj_mlp", "attn", "proj_out"))


def dit_ctx(num_steps: int = 10) -> SpaceContext:
    """A FLUX-like transformer: 2 double-stream and 1 single-stream block and their components."""
    profile = BlockProfile(blocks=DIT_STAGES, changes=tuple((0.0,) + (0.1,) * (num_steps - 1) for _ in DIT_STAGES))
    return SpaceContext(num_steps=num_steps, scheduler="FlowMatchEulerDiscreteScheduler", accepts_timesteps=False,
                        stages=DIT_STAGES, blocks=DIT_STAGES, n_branches=0, profile=profile, profile_id="p",
                        family="flux", transformer=True, components=DIT_COMPONENTS,
                        attention=tuple(c for c in DIT_COMPONENTS if c.endswith(".attn")))


def space_doc(**changes: object) -> dict:
    doc = yaml.safe_load((REPO / "search_spaces" / "joint.yaml").read_text())
    doc.update(changes)
    return doc


def test_builtin_spaces_are_the_top_level_files_stored_once() -> None:
    assert builtin_space_names() == ["blocks", "deepcache", "dit", "ecad", "joint", "runtime", "steps"]
    packaged = REPO / "src" / "cachesearch" / "search" / "spaces"
    assert packaged.is_symlink() and packaged.resolve() == (REPO / "search_spaces").resolve()  # one copy
    for name in builtin_space_names():
        assert find_space(name).resolve() == (REPO / "search_spaces" / f"{name}.yaml").resolve()
        space = load_space(find_space(name))
        assert space.name == name
        transformer = name in ("dit", "ecad", "runtime")  # the transformer-denoiser spaces (UNets: the others)
        resolved = space.resolve(dit_ctx(20) if transformer else ctx())  # 20: the run's default steps
        missing = [b.name for b in resolved.baselines() if resolved.params_for(b.policy) is None]
        assert not missing, (name, missing)
        assert space.label == f"search_spaces/{name}.yaml"  # how run folders name it: no machine path
    assert len(load_space(find_space("ecad")).resolve(dit_ctx()).param_names) == 9 * 9  # components x steps 1..9


def test_suggest_is_pure_and_replays_with_fixed_trial() -> None:
    resolved = load_space(find_space("joint")).resolve(ctx())
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=3))
    families = set()
    for _ in range(40):
        trial = study.ask()
        policy = resolved.suggest(trial)
        family = trial.params.get("mask.family")  # conditional: the chosen family's parameters only
        assert {n.split(".")[0] for n in trial.params} <= {"steps", "mask", family}
        assert ("steps.power" in trial.params) == (trial.params["steps.spacing"] == "power")
        assert resolved.suggest(FixedTrial(trial.params)) == policy
        families.add(type(policy.mask if isinstance(policy, Joint) else policy).__name__)
        study.tell(trial, [0.0, 1.0])
    assert {"DeepCache", "PeriodicMask", "BlockCachingAuto"} <= families


def test_ddim_restricts_spacing_to_scheduler_with_a_note() -> None:
    resolved = load_space(find_space("joint")).resolve(ctx(accepts_timesteps=False))
    assert "steps.spacing" not in resolved.param_names and "steps.power" not in resolved.param_names
    assert any("DDIMScheduler does not accept explicit timesteps" in n for n in resolved.notes)
    open_ = load_space(find_space("steps")).resolve(ctx(accepts_timesteps=True))
    assert {"steps.spacing", "steps.power"} <= set(open_.param_names)
    params = {n: d for n, d in zip(open_.param_names, [None] * len(open_.param_names), strict=True)}
    params.update({"steps.count": 6, "steps.spacing": "power", "steps.power": 2.0})
    assert open_.suggest(FixedTrial(params)) == StepSet(count=6, spacing="power", power=2.0)


def test_baselines_map_to_parameters_that_replay_to_them() -> None:
    resolved = load_space(find_space("joint")).resolve(ctx())
    for policy in (StepSet(count=5), DeepCache(interval=3, branch=4),
                   BlockCachingAuto(threshold=0.1, profile=PROFILE, profile_id="p")):
        params = resolved.params_for(policy)
        assert params is not None, policy
        replayed = resolved.suggest(FixedTrial(params))
        assert replayed == policy or (isinstance(policy, BlockCachingAuto) and replayed.threshold == 0.1)
    assert resolved.params_for(DeepCache(interval=9, branch=0)) is None  # interval outside 2..6
    assert resolved.params_for(DeepCache(interval=3, branch=0, schedule="nonuniform")) is None
    # the reference step set is the plain mask policy, and family none at all steps is full compute
    assert resolved.policy_from_params({**params, "mask.family": "none", "steps.count": 10}) == Full()


def test_periodic_family_compiles_windows_and_phase_modulo_period() -> None:
    resolved = load_space(find_space("blocks")).resolve(ctx())
    params = {n: 0 for n in resolved.param_names}
    params.update({"mask.family": "periodic", "blockcaching.threshold": 0.1, "mask.cfg": "shared",
                   "mask.scale_shift": "off"})
    for b in STAGES:
        params.update({f"periodic.{b}.period": 3, f"periodic.{b}.phase": 4, f"periodic.{b}.start": 0.2,
                       f"periodic.{b}.end": 0.8})
    policy = resolved.suggest(FixedTrial(params))
    assert isinstance(policy, PeriodicMask)
    assert policy.blocks[0] == ("down_blocks.0", 3, 1, 0.2, 0.8)  # phase 4 mod period 3
    masks = policy.masks(_space(), 10)
    assert masks["down_blocks.0"][0] == "RR..R..RRR"  # window [2, 8): recompute where (s - 1) % 3 == 0
    # a space file whose start and end ranges overlap may propose start > end: the window is swapped
    params.update({"periodic.down_blocks.0.start": 0.6, "periodic.down_blocks.0.end": 0.2})
    assert resolved.policy_from_params(params).blocks[0] == ("down_blocks.0", 3, 1, 0.2, 0.6)


def test_modifiers_apply_to_the_reference_step_family_blockcaching() -> None:
    """`mask.cfg` and `mask.scale_shift` are suggested for every caching family, so they must change its policy
    (they were once dropped for blockcaching: the trials were silent duplicates of the shared, unfitted mask)."""
    from cachesearch.schedule.policies import PerBranch, WithScaleShift

    resolved = load_space(find_space("blocks")).resolve(ctx())
    base = {"mask.family": "blockcaching", "blockcaching.threshold": 0.1}
    plain = resolved.policy_from_params({**base, "mask.cfg": "shared", "mask.scale_shift": "off"})
    assert isinstance(plain, BlockCachingAuto) and plain.threshold == 0.1
    fitted = resolved.policy_from_params({**base, "mask.cfg": "shared", "mask.scale_shift": "lstsq"})
    assert isinstance(fitted, WithScaleShift) and fitted.method == "lstsq" and fitted.mask == plain
    uncond = resolved.policy_from_params({**base, "mask.cfg": "uncond"})
    assert isinstance(uncond, PerBranch) and uncond.branch == "uncond" and uncond.mask == plain


def _space():
    from cachesearch.schedule import BlockInfo, BlockKind, BlockSpace

    return BlockSpace(family="unet2d", blocks=tuple(BlockInfo(name=s, kind=BlockKind.STAGE) for s in STAGES))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "cachesearch/space@2"}, "format: expected 'cachesearch/space@1'"),
        ({"stepz": {}}, "<top level>: unknown key(s) ['stepz']"),
        ({"steps": {"count": {"low": 4, "hihg": 9}}}, "steps.count: missing required key(s) ['high']"),
        ({"steps": {"count": {"low": 9, "high": 4}}}, "steps.count: low (9) must be <= high (4)"),
        ({"steps": {"count": 5, "spacing": ["scheduler", "cosine"]}}, "steps.spacing[1]: expected one of"),
        ({"mask": {"families": ["deepcache", "magic"]}}, "mask.families[1]: expected one of"),
        ({"mask": {"families": ["deepcache"], "periodic": {}}}, "mask.periodic: configures family 'periodic'"),
        ({"mask": {"families": ["deepcache"], "deepcache": {"interval": {"low": 0, "high": 3}}}},
         "mask.deepcache.interval.low: expected an integer >= 1, got 0"),
        ({"mask": {"families": ["periodic"], "periodic": {"blocks": 7}}}, "mask.periodic.blocks: expected"),
        ({"baselines": {"deepcache": {"intervals": [1]}}}, "baselines.deepcache.intervals[0]: expected an integer"),
        ({"steps": None, "baselines": ["steps"]}, "baselines.steps: 'steps' baselines need a 'steps' section"),
    ],
)
def test_invalid_space_names_file_and_field(change: dict, message: str) -> None:
    with pytest.raises(SpaceError) as info:
        parse_space(space_doc(**change), source="my-space.yaml")
    assert str(info.value).startswith("my-space.yaml: ")
    assert message in str(info.value)


def test_resolve_errors_name_the_field(tmp_path: Path) -> None:
    doc = space_doc(steps={"count": {"low": 4, "high": 30}})
    with pytest.raises(SpaceError, match=r"steps.count.high: 30 is too large: the reference sampler runs 10 steps"):
        parse_space(doc, source="s.yaml").resolve(ctx())
    doc = space_doc(mask={"families": ["periodic"], "periodic": {"blocks": ["up_blocks.7"]}}, baselines=[])
    with pytest.raises(SpaceError, match=r"mask.periodic.blocks\[0\]: unknown block 'up_blocks.7'"):
        parse_space(doc, source="s.yaml").resolve(ctx())
    doc = space_doc(mask={"families": ["deepcache"], "deepcache": {"branch": {"low": 0, "high": 8}}}, baselines=[])
    with pytest.raises(SpaceError, match=r"mask.deepcache.branch.high: 8 is too large: .* branches 0..5"):
        parse_space(doc, source="s.yaml").resolve(ctx())


def test_load_space_reports_yaml_problems(tmp_path: Path) -> None:
    bad = tmp_path / "dup.yaml"
    bad.write_text("format: cachesearch/space@1\nname: a\nname: b\nmask: {families: [deepcache]}\n")
    with pytest.raises(SpaceError, match=r"dup.yaml: line 3: key 'name' appears twice"):
        load_space(bad)
    with pytest.raises(SpaceError, match=r"nope.yaml: no such search-space file; .*built-in spaces: .*joint"):
        find_space(tmp_path / "nope.yaml")
