"""The policy-family registry: every shipped family registers itself; a new one is one class."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

import cachesearch as cs
from cachesearch.schedule import MaskPolicy, Policy, policy_from_dict
from cachesearch.schedule.policies import base, policy_class, policy_kinds, register_policy

SHIPPED = {
    "blockcaching": cs.BlockCachingAuto,
    "blockmask": cs.BlockMask,
    "cachedit": cs.CacheDiT,
    "deepcache": cs.DeepCache,
    "diffusers": cs.DiffusersCache,
    "full": cs.Full,
    "joint": cs.Joint,
    "perbranch": cs.PerBranch,
    "middle": cs.MiddleCache,
    "middleauto": cs.MiddleCacheAuto,
    "periodic": cs.PeriodicMask,
    "scaleshift": cs.WithScaleShift,
    "steps": cs.StepSet,
    "taylorseer": cs.TaylorSeer,
}


@pytest.fixture
def registry(monkeypatch):
    """A copy of the registry, so a test's families do not leak into other tests."""
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))


def test_each_shipped_family_registers_itself_under_its_kind():
    assert policy_kinds() == tuple(sorted(SHIPPED))
    for kind, cls in SHIPPED.items():
        assert policy_class(kind) is cls
        assert cls.kind == kind
    with pytest.raises(cs.ScheduleError, match="policy.kind: expected one of"):
        policy_class("nope")


def test_unknown_kind_lists_the_registered_ones():
    with pytest.raises(cs.ScheduleError) as e:
        policy_from_dict({"kind": "nope"})
    assert str(e.value) == (
        "policy.kind: expected one of ['blockcaching', 'blockmask', 'cachedit', 'deepcache', 'diffusers', 'full', "
        "'joint', 'middle', 'middleauto', 'perbranch', 'periodic', 'scaleshift', 'steps', 'taylorseer'], got 'nope'"
    )
    with pytest.raises(cs.ScheduleError, match=r"^policy.mask.kind: expected one of \['blockcaching'"):
        policy_from_dict({"kind": "joint", "steps": {"kind": "steps", "count": 4}, "mask": {"kind": "?"}})


def test_from_dict_keeps_the_field_path_and_refuses_unknown_keys():
    with pytest.raises(cs.ScheduleError) as e:
        policy_from_dict({"kind": "deepcache", "interval": 2, "every": 3})
    assert str(e.value) == (
        "policy: unknown keys ['every'] for kind 'deepcache'; expected ['branch', 'center', 'interval', "
        "'power', 'schedule']"
    )
    with pytest.raises(cs.ScheduleError, match=r"^policy.interval: expected an integer >= 1, got 0$"):
        policy_from_dict({"kind": "deepcache", "interval": 0})
    with pytest.raises(cs.ScheduleError, match=r"^policy: unknown keys \['x'\]$"):
        policy_from_dict({"kind": "joint", "steps": {"kind": "steps", "count": 4}, "mask": {"kind": "full"}, "x": 1})
    with pytest.raises(cs.ScheduleError, match=r"^policy: unknown keys \['masks'\]$"):
        policy_from_dict({"kind": "blockmask", "masks": {}})
    with pytest.raises(cs.ScheduleError, match="^policy: .*missing 1 required keyword-only argument: 'interval'"):
        policy_from_dict({"kind": "deepcache"})


def test_lists_from_files_come_back_as_tuples():
    p = policy_from_dict({"kind": "periodic", "blocks": [["mid_block", 3, 0, 0.0, 1.0]]})
    assert p == cs.PeriodicMask(blocks=(("mid_block", 3, 0, 0.0, 1.0),))
    assert policy_from_dict({"kind": "steps", "timesteps": [900, 500]}).timesteps == (900, 500)
    loaded = policy_from_dict({"kind": "blockmask"})
    assert isinstance(loaded, MaskPolicy) and loaded.to_dict() == {"kind": "blockmask"}
    assert loaded.default_name(4) == "blockmask"


def test_a_new_family_is_one_decorated_class(registry):
    @register_policy
    @dataclass(frozen=True, kw_only=True)
    class EveryOther(MaskPolicy):
        kind: ClassVar[str] = "test-everyother"
        block: str
        offset: int = 0

    assert "test-everyother" in policy_kinds()
    p = EveryOther(block="mid_block", offset=1)
    assert p.to_dict() == {"kind": "test-everyother", "block": "mid_block", "offset": 1}
    assert policy_from_dict(p.to_dict()) == p
    assert p.default_name(8) == "test-everyother"
    assert p.step_set() is None
    # inside a Joint too: Joint.from_dict goes through the registry
    j = cs.Joint(steps=cs.StepSet(count=4), mask=p)
    assert policy_from_dict(j.to_dict()) == j


def test_registration_errors(registry):
    class NoKind(MaskPolicy):
        pass

    class NotAPolicy:
        kind = "x"

    class Twin(MaskPolicy):
        kind: ClassVar[str] = "deepcache"

    with pytest.raises(TypeError, match="NoKind needs its own non-empty `kind"):
        register_policy(NoKind)
    with pytest.raises(TypeError, match="expected a Policy subclass"):
        register_policy(NotAPolicy)  # type: ignore[type-var]
    with pytest.raises(ValueError, match="kind 'deepcache' is already registered by .*policies.deepcache.DeepCache"):
        register_policy(Twin)
    assert policy_class("deepcache") is cs.DeepCache
    assert register_policy(cs.DeepCache) is cs.DeepCache  # the same class again (a module reload) is fine
    assert issubclass(Twin, Policy)
