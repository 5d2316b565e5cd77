"""The crossed warm start: the baselines on the baselines' front, each with the step-set baselines' step sets."""

from __future__ import annotations

from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState

from cachesearch.schedule import DeepCache, Joint, StepSet
from cachesearch.search import run_search
from cachesearch.search.crossing import ATTR_CROSSED, crossed_params
from cachesearch.search.space import SpaceContext, find_space, load_space
from cachesearch.search.study import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def space(make_evaluator):
    from cachesearch.search.run import _placeholder_profile

    ev = make_evaluator()
    return load_space(find_space("joint")).resolve(SpaceContext.of(ev, _placeholder_profile(ev)))


def _finished(space, baseline, number: int, values: tuple[float, float]) -> SimpleNamespace:
    """A finished baseline trial as the study holds it."""
    return SimpleNamespace(number=number, state=TrialState.COMPLETE, params=space.params_for(baseline.policy),
                           values=list(values), system_attrs={},
                           user_attrs={"baseline": baseline.name, "baseline_kind": baseline.kind})


def test_front_baselines_are_crossed_with_every_step_set_baseline(space) -> None:
    by_name = {b.name: b for b in space.baselines()}
    steps = [b for b in by_name.values() if b.kind == "steps"]
    assert len(steps) >= 2
    trials = [_finished(space, b, i, (0.5 - 0.01 * i, 0.1 + 0.05 * i)) for i, b in enumerate(steps)]
    n = len(trials)
    trials += [
        _finished(space, by_name["deepcache-n2-b0"], n, (0.002, 0.9)),      # on the front
        _finished(space, by_name["deepcache-n3-b0"], n + 1, (0.004, 0.8)),  # on the front
        _finished(space, by_name["deepcache-n5-b0"], n + 2, (0.01, 0.95)),  # dominated by n2-b0: not crossed
    ]
    bc = next(b for b in by_name.values() if b.kind == "blockcaching")
    trials.append(_finished(space, bc, n + 3, (0.001, 0.99)))  # on the front, but always the reference steps
    full = next(b for b in by_name.values() if b.kind == "deepcache" and b.name not in
                ("deepcache-n2-b0", "deepcache-n3-b0", "deepcache-n5-b0"))
    trials.append(_finished(space, full, n + 4, (0.0, 1.0)))  # full compute: never on the front that is crossed

    params, crossed = crossed_params(space, trials)
    assert crossed == ["deepcache-n2-b0", "deepcache-n3-b0"]
    policies = [space.policy_from_params(p) for p in params]
    # step set by step set (in baseline order), each with every crossed mask
    assert policies == [Joint(steps=StepSet(count=s.policy.count), mask=DeepCache(interval=n, branch=0))
                        for s in steps for n in (2, 3)]
    assert all(space._dists[k].contains(v) for p in params for k, v in p.items())
    # a trial that has not finished is not crossed; nor is anything without step-set baselines
    trials[n] = SimpleNamespace(**{**vars(trials[n]), "state": TrialState.FAIL, "values": None})
    assert crossed_params(space, trials)[1] == ["deepcache-n3-b0"]
    assert crossed_params(space, trials[n:]) == ([], [])


def test_with_steps_refuses_families_on_the_reference_steps(space) -> None:
    by_kind = {b.kind: b for b in space.baselines()}
    steps = space.params_for(by_kind["steps"].policy)
    assert space.with_steps(space.params_for(by_kind["blockcaching"].policy), steps) is None
    crossed = space.with_steps(space.params_for(by_kind["deepcache"].policy), steps)
    assert space.policy_from_params(crossed) == Joint(steps=by_kind["steps"].policy, mask=by_kind["deepcache"].policy)


def _study(settings):
    return optuna.load_study(study_name=settings.name, storage=open_storage(str(settings.run_dir / "study.journal")))


def test_a_run_enqueues_the_crossed_trials_once_after_the_baselines(settings, make_evaluator) -> None:
    s = settings(name="crossed", warm_start="crossed", trials=100)
    run_search(s, evaluator=make_evaluator(), export=False)
    study = _study(s)
    trials = study.get_trials()
    kinds = ["baseline" if "baseline" in t.user_attrs else t.user_attrs.get("warm_start", "sampled") for t in trials]
    n_base, n_cross = kinds.count("baseline"), kinds.count("cross")
    record = study.user_attrs[ATTR_CROSSED]
    assert n_cross == record["enqueued"] > 0 and record["crossed"]
    assert kinds[:n_base + n_cross] == ["baseline"] * n_base + ["cross"] * n_cross  # right after the baselines
    step_sets = {t.params["steps.count"] for t in trials if t.user_attrs.get("baseline_kind") == "steps"}
    for t in trials[n_base:n_base + n_cross]:
        assert t.state in (TrialState.COMPLETE, TrialState.PRUNED), (n_base, n_cross)  # evaluated (or screened)
        assert t.params["steps.count"] in step_sets and t.params["mask.family"] != "none"
    # resumed: the study is crossed already, nothing is enqueued again
    more = settings(name="crossed", warm_start="crossed", trials=110)
    run_search(more, evaluator=make_evaluator(), export=False)
    again = _study(more)
    assert again.user_attrs[ATTR_CROSSED] == record
    assert sum(t.user_attrs.get("warm_start") == "cross" for t in again.get_trials()) == n_cross


def test_the_baselines_warm_start_crosses_nothing(settings, make_evaluator) -> None:
    s = settings(name="plain", warm_start="baselines", trials=40)
    run_search(s, evaluator=make_evaluator(), export=False)
    study = _study(s)
    assert ATTR_CROSSED not in study.user_attrs
    assert not any(t.user_attrs.get("warm_start") == "cross" for t in study.get_trials())
