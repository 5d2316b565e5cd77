"""``CallRoles``: what a denoiser call is, read from its arguments (a side call beside the steps, the CFG pass)."""

from __future__ import annotations

import pytest
import torch
from diffusers import SanaWMLTX2RefinerTransformer3DModel, WanAnimate2Transformer3DModel, WanTransformer3DModel

from cachesearch.adapters import CallRoles, call_roles_of
from cachesearch.adapters.wan_animate2 import ROLES as ANIMATE


def _forward(self, hidden_states, timestep, kv_cache_mode=None, is_uncondtion=False, return_dict=True):
    """A denoiser forward's signature."""


@pytest.mark.parametrize(("fields", "match"), [
    ({"argument": "", "side": ("extract",)}, "CallRoles.argument"),
    ({"argument": "kv_cache_mode", "side": ()}, "CallRoles.side"),
    ({"argument": "kv_cache_mode", "side": ["extract"]}, "CallRoles.side"),
    ({"argument": "kv_cache_mode", "side": ("extract",), "branch_argument": "is_uncondtion"}, "together"),
    ({"argument": "kv_cache_mode", "side": ("extract",), "branch_argument": "u", "branches": ((True, "neg"),)},
     "'cond' \\| 'uncond'"),
])
def test_invalid_roles_are_refused_naming_the_field(fields, match):
    with pytest.raises(ValueError, match=match):
        CallRoles(**fields)


def test_reader_finds_the_arguments_by_keyword_or_position_and_never_compares_tensors():
    read = ANIMATE.reader(_forward)
    x, t = torch.zeros(1), torch.zeros(1)
    assert read((x, t), {"kv_cache_mode": "extract"}) == (True, None)
    assert read((x, t, "extract"), {}) == (True, None)
    assert read((x, t), {"kv_cache_mode": "cached", "is_uncondtion": True}) == (False, "uncond")
    assert read((x, t, "cached", False), {}) == (False, "cond")
    assert read((x, t), {}) == (False, None)  # no branch named: the default branch (or a cache context's)
    meta = torch.zeros((), device="meta", dtype=torch.bool)  # a tensor value is never read (no device sync)
    assert read((x, t), {"kv_cache_mode": meta, "is_uncondtion": meta}) == (False, None)


def test_roles_are_registered_per_class_and_inherited():
    assert call_roles_of(torch.nn.Linear(1, 1)) is None
    assert call_roles_of(WanTransformer3DModel.__new__(WanTransformer3DModel)) is None

    class Derived(WanAnimate2Transformer3DModel):
        pass

    assert call_roles_of(Derived.__new__(Derived)) is ANIMATE
    refiner = call_roles_of(SanaWMLTX2RefinerTransformer3DModel.__new__(SanaWMLTX2RefinerTransformer3DModel))
    assert refiner.side == ("capture_pre_rope", "inject_and_capture_post_rope") and refiner.branch_argument is None
