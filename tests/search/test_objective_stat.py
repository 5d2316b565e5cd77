"""``--objective-stat mean|p90|cvar``: the quality objective is that statistic of the per-image train losses,
screening bounds it exactly, and a study searched for one statistic is not resumed for another."""

from __future__ import annotations

from dataclasses import replace

import optuna
import pytest
import yaml

from cachesearch.evaluate._stats import lower_bound, statistic
from cachesearch.schedule import DeepCache
from cachesearch.search import RunSettings, SearchError, resolve_settings, run_search
from cachesearch.search.objective import KnownMasks, Objectives, Outcome, Screening, evaluate_candidate
from cachesearch.search.study import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize("stat", ["mean", "p90", "cvar"])
def test_the_objective_is_the_statistic_of_the_train_losses(make_evaluator, stat) -> None:
    out = evaluate_candidate(make_evaluator(n_train=8), DeepCache(interval=3, branch=0), Objectives(stat=stat))
    losses = out.user_attrs["result"]["losses"]
    assert len(losses) == 8 and len(set(losses)) == 8  # the fake evaluator's images differ
    assert out.values[0] == pytest.approx(statistic(losses, stat))
    assert Objectives(stat=stat).names[0] == ("quality" if stat == "mean" else f"quality_{stat}")


def test_the_objective_statistic_is_validated_by_its_flag() -> None:
    with pytest.raises(ValueError, match=r"--objective-stat: expected one of \['mean', 'p90', 'cvar'\]"):
        Objectives(stat="p99")
    with pytest.raises(SearchError, match="--objective-stat"):
        RunSettings(name="x", objective_stat="max")


@pytest.mark.parametrize("stat", ["p90", "cvar"])
def test_screening_bounds_a_tail_statistic_exactly(make_evaluator, stat) -> None:
    ev = make_evaluator(n_train=8)
    policy = DeepCache(interval=4, branch=0)
    full = evaluate_candidate(make_evaluator(n_train=8), policy, Objectives(stat=stat))
    cost = full.user_attrs["result"]["cost_ratio"]
    known = KnownMasks()
    known.add(0, Outcome(values=(1e-9, cost * 0.99), user_attrs={"mask_key": "k"}))  # near-perfect and cheaper
    out = evaluate_candidate(ev, policy, Objectives(stat=stat), known=known, screening=Screening((2, 4)))
    screened = out.user_attrs["screened"]
    assert screened["images"] == 2 and ev.ranges == [("train", slice(0, 2))]
    seen = out.user_attrs["result"]["losses"]
    assert screened["bound"] == pytest.approx(lower_bound(seen, 8, stat)) and screened["bound"] <= full.values[0]
    # a front point that is only better than the full value, not than the bound, screens nothing
    known = KnownMasks()
    known.add(0, Outcome(values=(full.values[0] * 0.999, cost * 0.99), user_attrs={"mask_key": "k"}))
    ev = make_evaluator(n_train=8)
    staged = evaluate_candidate(ev, policy, Objectives(stat=stat), known=known, screening=Screening((2, 4)))
    assert "screened" not in staged.user_attrs and staged.values[0] == pytest.approx(full.values[0], rel=1e-12)


def test_a_p90_run_records_its_statistic_and_refuses_a_resume_for_another(settings, make_evaluator) -> None:
    s = settings(trials=6, n_train=4, objective_stat="p90")
    summary = run_search(s, evaluator=make_evaluator(n_train=4), export=False)
    study = optuna.load_study(study_name=s.name, storage=open_storage(str(s.run_dir / "study.journal")))
    assert study.metric_names == ["quality_p90", "cost_ratio"] and summary.completed
    for t in study.trials:
        if t.values is not None and "duplicate_of" not in t.user_attrs:
            assert t.values[0] == pytest.approx(statistic(t.user_attrs["result"]["losses"], "p90"))
    with pytest.raises(SearchError, match="objective stat: study has 'p90', this run has 'mean'"):
        run_search(replace(s, objective_stat="mean", trials=7), evaluator=make_evaluator(n_train=4), export=False)
    assert resolve_settings(s.name, {}, out=s.out).objective_stat == "p90"  # read back from run.yaml


def test_a_run_stored_before_the_setting_existed_minimised_the_mean(settings, make_evaluator) -> None:
    s = settings(trials=3)
    run_search(s, evaluator=make_evaluator(), export=False)
    path = s.run_dir / "run.yaml"
    doc = yaml.safe_load(path.read_text())
    del doc["settings"]["objective_stat"]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert resolve_settings(s.name, {}, out=s.out).objective_stat == "mean"
    assert RunSettings.from_dict({"name": "x"}).objective_stat == "mean"
