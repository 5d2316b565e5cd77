"""Each policy family's search side: policy → parameters → FixedTrial → the same policy, the suggestion order
a seed depends on, the default space per block space, and a family registered from outside."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
import yaml
from optuna.trial import FixedTrial

from cachesearch.schedule import (
    BlockCachingAuto,
    BlockInfo,
    BlockKind,
    BlockProfile,
    BlockSpace,
    DeepCache,
    Full,
    Joint,
    PeriodicMask,
    Policy,
    StepSet,
)
from cachesearch.search import SpaceContext, default_space, find_space, load_space, parse_space
from cachesearch.search.space import MaskFamily, mask_families, register
from cachesearch.search.space.families.base import _REGISTRY as REGISTRY
from cachesearch.search.space.params import Dist, Fields

STAGES = ("down_blocks.0", "down_blocks.1", "mid_block", "up_blocks.0", "up_blocks.1")
PROFILE = BlockProfile(blocks=STAGES, changes=tuple(tuple(0.0 if s == 0 else 0.05 * (i + 1) for s in range(10))
                                                    for i in range(len(STAGES))))


def ctx(accepts_timesteps: bool = True, n_branches: int = 6) -> SpaceContext:
    return SpaceContext(num_steps=10, scheduler="DPMSolverMultistepScheduler", accepts_timesteps=accepts_timesteps,
                        stages=STAGES, blocks=STAGES + ("up_blocks.1.resnets.0",), n_branches=n_branches,
                        profile=PROFILE, profile_id="p")


def _round_trip(resolved, policy: Policy) -> Policy:
    params = resolved.params_for(policy)
    assert params is not None, policy
    trial = FixedTrial(params)
    replayed = resolved.suggest(trial)
    assert set(trial.params) == set(params) <= set(resolved.param_names)  # only (and all) the active ones
    return replayed


@pytest.mark.parametrize(
    ("family", "policy"),
    [
        ("steps", StepSet(count=6)),
        ("steps", StepSet(count=4, spacing="linear")),
        ("steps", StepSet(count=5, spacing="power", power=2.5)),
        ("none", Full()),
        ("deepcache", DeepCache(interval=3, branch=4)),
        ("deepcache", Joint(steps=StepSet(count=8, spacing="linear"), mask=DeepCache(interval=2, branch=0))),
        ("periodic", PeriodicMask(blocks=tuple((b, 3, 1, 0.25, 0.75) for b in STAGES))),
        ("periodic", Joint(steps=StepSet(count=7), mask=PeriodicMask(blocks=tuple((b, 2, 0, 0.0, 1.0)
                                                                                  for b in STAGES)))),
    ],
)
def test_policy_to_parameters_to_fixed_trial_replays_the_policy(family: str, policy: Policy) -> None:
    resolved = load_space(find_space("joint")).resolve(ctx())
    assert _round_trip(resolved, policy) == policy


def test_blockcaching_round_trip_keeps_the_threshold_and_the_runs_profile() -> None:
    resolved = load_space(find_space("blocks")).resolve(ctx())
    replayed = _round_trip(resolved, BlockCachingAuto(threshold=0.2, profile=PROFILE, profile_id="other-id"))
    assert replayed == BlockCachingAuto(threshold=0.2, profile=PROFILE, profile_id="p")


def test_each_family_maps_its_own_values_back_to_its_policy() -> None:
    space = load_space(find_space("joint"))
    c = ctx()
    policies = {"none": None, "deepcache": DeepCache(interval=5, branch=2),
                "periodic": PeriodicMask(blocks=tuple((b, 4, 3, 0.1, 0.9) for b in STAGES)),
                "blockcaching": BlockCachingAuto(threshold=0.5, profile=PROFILE, profile_id="p")}
    for name, family in space.masks.items():
        values = family.params(policies[name], c)
        assert values is not None, name
        assert family.policy(values, c, c.num_steps) == policies[name]
        others = [p for n, p in policies.items() if n != name]
        assert all(family.params(p, c) is None for p in others), name  # a family only claims its own policies
    steps = space.steps
    assert steps.policy(steps.params(StepSet(count=3, spacing="power", power=1.5), c), c, 10) == StepSet(
        count=3, spacing="power", power=1.5)
    assert steps.params(None, c) == {"steps.count": 10, "steps.spacing": "scheduler"}  # the reference steps
    assert steps.policy({"steps.count": 10, "steps.spacing": "scheduler"}, c, 10) is None


def test_policies_outside_the_ranges_have_no_parameters() -> None:
    resolved = load_space(find_space("joint")).resolve(ctx())
    assert resolved.params_for(DeepCache(interval=9, branch=0)) is None  # interval outside 2..6
    assert resolved.params_for(DeepCache(interval=3, branch=0, schedule="nonuniform")) is None
    assert resolved.params_for(StepSet(count=10)) is None  # the reference count is full compute, not a step set
    assert resolved.params_for(Joint(steps=StepSet(count=4), mask=BlockCachingAuto(threshold=0.1, profile=PROFILE,
                                                                                   profile_id="p"))) is None
    ddim = load_space(find_space("joint")).resolve(ctx(accepts_timesteps=False))
    assert ddim.params_for(StepSet(count=4, spacing="linear")) is None  # DDIM: only the scheduler's spacing


def test_suggestion_order_is_fixed() -> None:
    """The order of the suggestions is what a seeded sampler's random draws follow: it must not change."""
    resolved = load_space(find_space("joint")).resolve(ctx())
    periodic = tuple(f"periodic.{b}.{k}" for b in STAGES for k in ("period", "phase", "start", "end"))
    assert resolved.param_names == (
        "steps.count", "steps.spacing", "steps.power", "mask.family", "deepcache.interval", "deepcache.branch",
        "deepcache.schedule", "deepcache.center", "deepcache.power", *periodic, "blockcaching.threshold",
    )
    assert list(mask_families()) == ["none", "deepcache", "periodic", "blockcaching", "taylorseer", "middle",
                                     "components", "middleauto", "fbcache", "magcache", "dbcache", "pab",
                                     "fastercache", "seacache"]


def test_baselines_come_with_their_kind_in_enqueue_order() -> None:
    resolved = load_space(find_space("joint")).resolve(ctx())
    items = resolved.baselines()
    assert [b.kind for b in items] == ["steps"] * 5 + ["deepcache"] * 18  # no block space: no Block Caching
    assert [b.name for b in items[:5]] == ["steps-8", "steps-5", "steps-4", "steps-3", "steps-2"]  # joint.yaml
    assert {b.policy.interval for b in items if b.kind == "deepcache"} == {2, 3, 5}


def _blocks(branches: int) -> BlockSpace:
    infos = tuple(BlockInfo(name=s, kind=BlockKind.STAGE) for s in STAGES)
    dc = tuple(frozenset(STAGES[:1]) for _ in range(branches))
    return BlockSpace(family="test", blocks=infos, deepcache_branches=dc)


def test_default_space_has_deepcache_only_where_the_block_space_has_branches() -> None:
    with_branches = default_space(_blocks(2))
    assert with_branches.families == ("none", "deepcache", "periodic", "blockcaching")
    assert with_branches.text == find_space("joint").read_text()  # the shipped file itself: same digest
    without = default_space(_blocks(0))
    assert without.families == ("none", "periodic", "blockcaching")
    assert "deepcache" not in without.masks and without.baselines == ("steps", "blockcaching")
    assert without.text.startswith("# ") and "without deepcache" in without.text.splitlines()[0]
    assert without.text.startswith("# search_spaces/joint.yaml without")  # repo-relative: no machine path
    assert parse_space(yaml.safe_load(without.text), text=without.text).digest == without.digest
    without.resolve(ctx(n_branches=0))  # fits the model it was made for


@dataclass(frozen=True)
class _EveryOther(MaskFamily):
    """A test family: recompute every other step (one fixed policy, no parameters)."""

    name: ClassVar[str] = "test-every-other"
    defaults: ClassVar[Mapping[str, Any]] = {"period": 2}

    @classmethod
    def parse(cls, fields: Fields, path: str, section: Mapping[str, Any]) -> _EveryOther:
        fields.int(f"{path}.period", section["period"], lo=1)
        return cls()

    def dists(self, ctx: SpaceContext, fields: Fields) -> list[Dist]:
        return []

    def policy(self, values: Mapping[str, Any], ctx: SpaceContext, num_steps: int) -> Policy:
        return DeepCache(interval=2, branch=0)

    def params(self, policy: Policy | None, ctx: SpaceContext) -> dict[str, Any] | None:
        return {} if policy == DeepCache(interval=2, branch=0) else None


def test_a_new_family_is_one_class_and_its_registration() -> None:
    register(_EveryOther)
    try:
        doc = {"format": "cachesearch/space@1", "name": "x", "steps": {"count": {"low": 2, "high": "steps"}},
               "mask": {"families": ["none", "test-every-other"], "test-every-other": {"period": 2}}}
        resolved = parse_space(doc, source="x.yaml").resolve(ctx())
        assert resolved.param_names == ("steps.count", "mask.family")
        policy = resolved.policy_from_params({"steps.count": 5, "mask.family": "test-every-other"})
        assert policy == Joint(steps=StepSet(count=5), mask=DeepCache(interval=2, branch=0))
    finally:
        REGISTRY.pop(_EveryOther.name)
