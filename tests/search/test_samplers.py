"""The samplers a run can use (NSGA-II, grouped multivariate TPE, GP, random) and the grid warm start."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from cachesearch.search import SearchError, run_search
from cachesearch.search.space import SpaceContext, find_space, load_space
from cachesearch.search.study import make_sampler, open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _trials(settings):
    study = optuna.load_study(study_name=settings.name, storage=open_storage(str(settings.run_dir / "study.journal")))
    return study.get_trials()


@pytest.mark.parametrize("sampler", ["nsga2", "tpe", "gp", "random"])
def test_every_sampler_proposes_its_own_candidates_after_the_baselines(sampler, settings, make_evaluator) -> None:
    s = settings(name=f"s-{sampler}", sampler=sampler, trials=46)
    run_search(s, evaluator=make_evaluator(), export=False)
    trials = _trials(s)
    sampled = [t for t in trials if "baseline" not in t.user_attrs]
    assert len(trials) == 46 and len(sampled) >= 20
    assert len({t.user_attrs["mask_key"] for t in sampled if t.state == TrialState.COMPLETE}) >= 10
    assert {t.params.get("mask.family") for t in sampled} >= {"deepcache", "periodic"}


def test_tpe_models_the_conditional_space_jointly_per_group() -> None:
    tpe = make_sampler("tpe", seed=0, population=24)
    assert isinstance(tpe, optuna.samplers.TPESampler)
    assert tpe._multivariate and tpe._group and tpe._constant_liar
    assert isinstance(make_sampler("gp", seed=0, population=24), optuna.samplers.GPSampler)
    with pytest.raises(SearchError, match="--sampler"):
        make_sampler("cmaes", seed=0, population=24)


def test_grid_warm_start_is_a_latin_hypercube_per_family(make_evaluator) -> None:
    from cachesearch.search.run import _placeholder_profile

    ev = make_evaluator()
    space = load_space(find_space("joint")).resolve(SpaceContext.of(ev, _placeholder_profile(ev)))
    grid = space.grid(12, seed=0)
    assert grid == space.grid(12, seed=0) and grid != space.grid(12, seed=1)
    families = [p["mask.family"] for p in grid]
    assert {f: families.count(f) for f in set(families)} == {"deepcache": 4, "periodic": 4, "blockcaching": 4}
    for family in ("deepcache", "periodic", "blockcaching"):
        points = [p for p in grid if p["mask.family"] == family]
        for name in ("steps.count", *(k for k in points[0] if k.startswith(family))):
            d = space._dists[name]
            if d.kind == "float" and not d.log:  # one point in each quarter of the range
                assert sorted(int((p[name] - d.low) / (d.high - d.low) * 4) for p in points) == [0, 1, 2, 3], name
        for p in points:
            space.policy_from_params(p)
            assert all(space._dists[k].contains(v) for k, v in p.items())


def test_grid_warm_start_enqueues_the_grid_after_the_baselines(settings, make_evaluator) -> None:
    s = settings(name="warm", warm_start="grid", trials=34, population=6)
    run_search(s, evaluator=make_evaluator(), export=False)
    trials = _trials(s)
    kinds = ["baseline" if "baseline" in t.user_attrs else t.user_attrs.get("warm_start", "sampled") for t in trials]
    n_base, n_grid = kinds.count("baseline"), kinds.count("grid")
    assert n_grid == 6 and kinds[:n_base + n_grid] == ["baseline"] * n_base + ["grid"] * n_grid
    with pytest.raises(SearchError, match="--warm-start"):
        settings(warm_start="lhs")
