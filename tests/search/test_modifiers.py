"""Scale-shift on/off and per-CFG-branch masks as search dimensions (``mask.scale_shift``, ``mask.cfg``)."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import FixedTrial, TrialState

import cachesearch as cs
from cachesearch.schedule import PerBranch, WithScaleShift, policy_from_dict
from cachesearch.schedule.policies import scale_shift_request
from cachesearch.search import run_search
from cachesearch.search.objective import Objectives, evaluate_candidate, mask_key
from cachesearch.search.space import load_space, parse_space
from cachesearch.search.space.file import SpaceError, find_space
from cachesearch.search.study import open_storage
from tests.search.test_families import ctx

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = """
format: cachesearch/space@1
name: mods
mask:
  families: [none, deepcache]
  deepcache: {interval: {low: 2, high: 4}, branch: 0, schedule: uniform}
  scale_shift: [lstsq, off]
  cfg: [uncond, shared]
"""


def _space():
    import yaml

    return parse_space(yaml.safe_load(SPACE), source="mods.yaml", text=SPACE)


def test_per_branch_and_scale_shift_policies_compile_and_round_trip(make_evaluator) -> None:
    ev = make_evaluator()
    inner = cs.DeepCache(interval=3, branch=0)
    plain = ev.compile(inner)
    split = ev.compile(PerBranch(mask=inner, branch="uncond"))
    for bm in split.blocks:
        assert bm.cond == "R" * ev.num_inference_steps and bm.uncond == plain.masks("uncond")[bm.block]
    assert ev.cost_ratio(plain) < ev.cost_ratio(split) < 1.0  # half the batch recomputes
    wrapped = WithScaleShift(mask=PerBranch(mask=inner), method="distill")
    assert policy_from_dict(wrapped.to_dict()) == wrapped and scale_shift_request(wrapped) == "distill"
    assert scale_shift_request(cs.Joint(steps=cs.StepSet(count=4), mask=WithScaleShift(mask=inner))) == "lstsq"
    assert scale_shift_request(inner) is None
    with pytest.raises(cs.ScheduleError, match="policy.branch"):
        PerBranch(mask=inner, branch="both")
    with pytest.raises(cs.ScheduleError, match="policy.method"):
        WithScaleShift(mask=inner, method="adam")


def test_a_scale_shift_trial_fits_once_per_mask_and_has_its_own_key(make_evaluator) -> None:
    ev = make_evaluator()
    policy = WithScaleShift(mask=cs.DeepCache(interval=3, branch=0))
    masks_only = ev.compile(policy, fit=False)
    fitted = ev.compile(policy)
    assert masks_only.scale_shift is None and fitted.scale_shift is not None
    assert mask_key(masks_only) == mask_key(fitted) != mask_key(ev.compile(cs.DeepCache(interval=3, branch=0)))
    again = ev.compile(policy, name="other")
    assert again.scale_shift is fitted.scale_shift and len(ev.scale_shifts.seconds) == 1  # reused, not refitted
    out = evaluate_candidate(ev, policy, Objectives())
    assert out.ok and out.user_attrs["scale_shift"]["method"] == "lstsq"
    assert out.user_attrs["scale_shift"]["fit_s"] >= 0


def test_modifiers_are_suggested_only_for_caching_trials_and_replay() -> None:
    resolved = _space().resolve(ctx())
    assert _space().scale_shift == ("off", "lstsq") and _space().cfg == ("shared", "uncond")  # neutral first
    none = resolved.suggest(FixedTrial({"mask.family": "none"}))
    assert isinstance(none, cs.Full)
    values = {"mask.family": "deepcache", "deepcache.interval": 3, "deepcache.branch": 0,
              "deepcache.schedule": "uniform", "mask.cfg": "shared", "mask.scale_shift": "lstsq"}
    assert resolved.suggest(FixedTrial(values)) == WithScaleShift(mask=cs.DeepCache(interval=3, branch=0))
    values["mask.cfg"] = "uncond"
    del values["mask.scale_shift"]  # inactive under a per-branch mask
    assert resolved.suggest(FixedTrial(values)) == PerBranch(mask=cs.DeepCache(interval=3, branch=0))
    assert resolved.params_for(cs.DeepCache(interval=2, branch=0)) is not None  # baselines stay expressible


def test_the_blocks_space_searches_both_and_bad_values_name_the_field() -> None:
    blocks = load_space(find_space("blocks"))
    assert blocks.scale_shift == ("off", "lstsq") and blocks.cfg == ("shared", "uncond")
    assert load_space(find_space("joint")).scale_shift == ("off",)
    bad = SPACE.replace("[lstsq, off]", "[lstsq, adam]")
    import yaml

    with pytest.raises(SpaceError, match=r"mask.scale_shift\[1\]"):
        parse_space(yaml.safe_load(bad), source="bad.yaml", text=bad)


def test_a_run_records_scale_shift_and_per_branch_trials(settings, make_evaluator) -> None:
    s = settings(space="blocks", trials=24, sampler="random")
    ev = make_evaluator()
    run_search(s, evaluator=ev, export=True)
    study = optuna.load_study(study_name=s.name, storage=open_storage(str(s.run_dir / "study.journal")))
    done = study.get_trials(states=(TrialState.COMPLETE,))
    fitted = [t for t in done if "scale_shift" in t.user_attrs]
    split = [t for t in done if t.params.get("mask.cfg") == "uncond"]
    assert fitted and split
    assert all("mask.scale_shift" not in t.params for t in split)
    assert all(t.user_attrs["policy"]["kind"] in ("scaleshift",) for t in fitted)
    index = (s.run_dir / "schedules" / "index.yaml").read_text()
    for t in fitted:  # an exported scale-shift schedule carries its fitted parameters (sidecar beside it)
        if f"t{t.number:04d}-" in index:
            name = next(p for p in (s.run_dir / "schedules").glob(f"t{t.number:04d}-*.yaml"))
            assert cs.load_schedule(name).scale_shift is not None
