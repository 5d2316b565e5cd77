"""Duplicates stay out of the study's values (PRUNED, not COMPLETE copies), trials carry only their active
parameters, and infeasible non-uniform DeepCache combinations are mapped to feasible ones by the space."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from optuna.trial import FixedTrial, TrialState

from cachesearch.schedule import DeepCache, ScheduleError
from cachesearch.search import pareto_trials, run_search
from cachesearch.search.executors import local
from cachesearch.search.objective import KnownMasks
from cachesearch.search.space import load_space
from cachesearch.search.space.families.base import mask_families
from cachesearch.search.space.families.deepcache import feasible_center
from cachesearch.search.study import open_storage
from tests.search.test_families import ctx

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(s):
    return optuna.load_study(study_name=s.name, storage=open_storage(str(s.run_dir / "study.journal")))


def _old_record_outcome(study, trial, outcome):
    """How duplicates were recorded before: a COMPLETE copy of the evaluated trial's values (``duplicate_of``)."""
    for key, value in outcome.user_attrs.items():
        trial.set_user_attr(key, value)
    if not outcome.ok:
        trial.set_user_attr("reason", outcome.reason)
        study.tell(trial, state=TrialState.FAIL)
        return
    for key, value in outcome.constraints.items():
        trial.set_constraint(key, float(value))
    study.tell(trial, list(outcome.values))


# -- 1. duplicates -------------------------------------------------------------------------------------------
def test_duplicates_are_pruned_and_best_trials_hold_distinct_masks(settings, make_evaluator) -> None:
    s = settings(space="steps", trials=16, sampler="random")  # 7 candidates (2..8 steps) in 16 trials
    ev = make_evaluator()
    summary = run_search(s, evaluator=ev, export=False)
    study = _study(s)
    trials = study.get_trials()
    dups = [t for t in trials if "duplicate_of" in t.user_attrs]
    assert dups and all(t.state == TrialState.PRUNED and t.values is None for t in dups)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert not any("duplicate_of" in t.user_attrs for t in complete)
    keys = [t.user_attrs["mask_key"] for t in complete]
    assert len(keys) == len(set(keys)) == ev.calls["train"]  # each mask evaluated once, one COMPLETE trial each
    best = [t.user_attrs["mask_key"] for t in study.best_trials]
    assert len(best) == len(set(best))
    assert summary.duplicates == len(dups) and summary.completed == len(complete)
    assert summary.trials_total == 16 == len(complete) + len(dups)  # duplicates still count toward --trials
    known = KnownMasks()
    for t in trials:
        known.add_trial(t)
    assert set(known.entries) == set(keys)


def test_export_and_report_are_the_same_as_with_complete_copies(settings, make_evaluator, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Random proposals do not depend on the study: the old recording (COMPLETE copies) and the new one see the
    same candidates, so the exported front must be the same; the report still counts the duplicates."""
    new = settings(space="steps", trials=16, sampler="random", out=str(tmp_path / "new"))
    got = run_search(new, evaluator=make_evaluator(), export=True)
    with monkeypatch.context() as m:
        m.setattr(local, "record_outcome", _old_record_outcome)
        old = run_search(replace(new, out=str(tmp_path / "old")), evaluator=make_evaluator(), export=True)
    assert old.duplicates == got.duplicates > 0
    assert [t.number for t in old.front] == [t.number for t in got.front]

    def rows(export):
        return [(e.file, e.trial, e.baseline, e.quality, e.cost_ratio) for e in export.entries]

    assert rows(old.export) == rows(got.export)
    assert [(b.name, b.quality, b.cost, b.state) for b in old.export.baselines] == \
           [(b.name, b.quality, b.cost, b.state) for b in got.export.baselines]
    report = got.report.read_text(encoding="utf-8")
    assert f"{got.duplicates} duplicates of an evaluated mask were not re-run" in report


def test_resuming_a_study_with_complete_copies_excludes_them(settings, make_evaluator,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(space="steps", trials=12, sampler="random")
    with monkeypatch.context() as m:
        m.setattr(local, "record_outcome", _old_record_outcome)
        run_search(s, evaluator=make_evaluator(), export=False)
    copies = [t.number for t in _study(s).get_trials(states=(TrialState.COMPLETE,)) if "duplicate_of" in t.user_attrs]
    assert copies, "the old recording made COMPLETE copies"
    ev = make_evaluator()
    summary = run_search(replace(s, trials=20), evaluator=ev, export=True)
    study = _study(s)
    assert ev.calls["train"] == 0  # all 7 masks were evaluated before: nothing is re-run
    new = [t for t in study.get_trials() if t.number >= 12]
    assert new and all(t.state == TrialState.PRUNED for t in new)
    front = pareto_trials(study)
    assert not {t.number for t in front} & set(copies)
    keys = [t.user_attrs["mask_key"] for t in front]
    assert len(keys) == len(set(keys))
    assert not {e.trial for e in summary.export.entries} & set(copies)
    assert summary.duplicates == len(copies) + len(new)


# -- 2. active parameters only -------------------------------------------------------------------------------
def test_trials_carry_only_their_active_parameters_and_replay(settings, make_evaluator) -> None:
    s = settings(trials=40, sampler="random")  # the joint space over DDIM
    run_search(s, evaluator=make_evaluator(), export=False)
    study = _study(s)
    families = set()
    for t in study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)):
        family = t.params.get("mask.family")
        families.add(family)
        assert {n.split(".")[0] for n in t.params} <= {"steps", "mask", family}, t.params
        if family == "deepcache":
            nonuniform = t.params.get("deepcache.schedule") == "nonuniform"
            assert ("deepcache.center" in t.params) == ("deepcache.power" in t.params) == nonuniform
    assert {"none", "deepcache", "periodic"} <= families
    # FixedTrial replay of each trial rebuilds its recorded policy, asking for exactly its parameters
    from cachesearch.search.run import open_run

    prep = open_run(s.name, s.out, evaluator=make_evaluator())
    for t in study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)):
        fixed = FixedTrial(dict(t.params), number=t.number)
        assert prep.space.suggest(fixed).to_dict() == t.user_attrs["policy"]
        assert set(fixed.params) == set(t.params)


# -- 3. infeasible non-uniform DeepCache ------------------------------------------------------------------------
def test_feasible_center_is_the_identity_on_feasible_centers_and_never_fails() -> None:
    moved = 0
    for n in range(2, 41):
        for interval in range(2, 7):
            for power in (1.1, 1.4, 2.0, 2.5):
                for c in range(n):
                    fc = feasible_center(n, interval, c, power)
                    DeepCache(interval=interval, schedule="nonuniform", center=fc, power=power).full_steps(n)
                    try:
                        DeepCache(interval=interval, schedule="nonuniform", center=c, power=power).full_steps(n)
                    except ScheduleError:
                        moved += 1
                        assert abs(fc - c) == 1, (n, interval, c, power, fc)
                    else:
                        assert fc == c
    assert moved  # e.g. 6 steps, interval 2, center 3 cannot place its full steps
    assert feasible_center(6, 2, 3, 1.4) == 2


def test_space_maps_an_infeasible_deepcache_center_to_a_feasible_policy() -> None:
    resolved = load_space(Path(__file__).parents[2] / "search_spaces" / "deepcache.yaml").resolve(
        replace(ctx(), num_steps=6))
    params = {"deepcache.interval": 2, "deepcache.branch": 0, "deepcache.schedule": "nonuniform",
              "deepcache.center": 0.5, "deepcache.power": 1.4}  # center step 3: infeasible
    policy = resolved.suggest(FixedTrial(params))
    assert policy == DeepCache(interval=2, branch=0, schedule="nonuniform", center=2, power=1.4)
    assert resolved.suggest(FixedTrial(params)) == policy  # pure
    policy.full_steps(6)


NONUNIFORM = """format: cachesearch/space@1
name: nonuniform-dc
steps:
  count: {low: 5, high: steps}
mask:
  families: [deepcache]
  deepcache:
    interval: 2
    schedule: [nonuniform]
    center: {low: 0.3, high: 0.7}
    power: {low: 1.1, high: 1.4}
baselines: []
"""


def test_a_nonuniform_deepcache_search_has_no_infeasible_failures(settings, make_evaluator, tmp_path: Path) -> None:
    """Before the space mapped infeasible centers, this search (seed 0, 60 random trials) failed 8 of 60 trials
    with "DeepCache non-uniform: cannot place …" (center 3 of 6 steps, center 5 of 8)."""
    assert "deepcache" in mask_families()
    space = tmp_path / "nonuniform.yaml"
    space.write_text(NONUNIFORM, encoding="utf-8")
    s = settings(space=str(space), trials=60, sampler="random")
    run_search(s, evaluator=make_evaluator(), export=False)
    trials = _study(s).get_trials()
    reasons = Counter(t.user_attrs.get("reason", "") for t in trials if t.state == TrialState.FAIL)
    assert not [r for r in reasons if "cannot place" in r], reasons
    assert not reasons
    assert sum(t.state == TrialState.COMPLETE for t in trials) >= 10
    assert all(not math.isnan(t.values[0]) for t in trials if t.state == TrialState.COMPLETE)


def test_front_trials_on_the_same_point_are_exported_once() -> None:
    """Runtime caches whose thresholds differ but skip the same calls on the train images land on the same point
    with different mask keys (a TPE run had 119 front trials on 27 points): the first stands for all of them."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    study = optuna.create_study(directions=["minimize", "minimize"])
    points = [(0.01, 0.55), (0.01, 0.55), (0.05, 0.3), (0.01, 0.55), (0.05, 0.3), (0.001, 0.8), (0.02, 0.55)]
    for i, (loss, cost) in enumerate(points):
        study.add_trial(create_trial(values=[loss, cost], params={"t": i / 10},
                                     distributions={"t": FloatDistribution(0, 1)},
                                     user_attrs={"mask_key": f"magcache-t{i}"}))
    front = pareto_trials(study)
    assert [t.number for t in front] == [2, 0, 5]  # by cost; 1, 3 (same as 0) and 4 (same as 2) dropped
    assert len(study.best_trials) == 6
