"""search_efficiency.py's model-free parts: hypervolume, fronts, checkpoints, the compute to reach a target, the
budget stop, and the components-only space it writes."""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest

from benchmarks import _efficiency as eff
from benchmarks._search_wall import _components_space
from benchmarks.search_efficiency import _Budget
from cachesearch.search.space import load_space


def test_hypervolume_in_log_loss_and_cost_up_to_the_reference_point() -> None:
    ref_q, ref_c = eff.REF_POINT
    assert eff.hypervolume([(0.01, 0.5)]) == pytest.approx((ref_q + 2) * (ref_c - 0.5))
    two = eff.hypervolume([(0.01, 0.5), (0.001, 0.8)])
    assert two == pytest.approx((ref_q + 2) * (ref_c - 0.5) + (ref_q + 3) * (0.5 - 0.8 + 0.3) + 1 * 0.0 + (
        (ref_q + 3) - (ref_q + 2)) * (ref_c - 0.8))
    assert eff.hypervolume([(0.0, 0.9)]) == eff.hypervolume([(1e-9, 0.9)]) == pytest.approx((ref_q + 4) * 0.15)
    assert eff.hypervolume([(0.6, 0.1), (0.01, 1.2)]) == 0.0  # outside the reference box
    assert eff.hypervolume([(0.01, 0.5), (0.02, 0.6)]) == eff.hypervolume([(0.01, 0.5)])  # dominated adds nothing


def _record(number: int, q: float, c: float, kind: str = "evaluated", macs: float = 1.0) -> dict:
    return {"number": number, "kind": kind, "values": [q, c] if kind == "evaluated" else None, "feasible": True,
            "macs": macs}


def test_front_at_uses_only_the_first_records_and_leaves_out_full_compute() -> None:
    records = [_record(0, 0.0, 1.0), _record(1, 0.1, 0.5), _record(2, 0.2, 0.4, kind="screened"),
               _record(3, 0.05, 0.6), _record(4, 0.2, 0.7)]
    assert [r["number"] for r in eff.front_at(records, 2)] == [1]
    assert [r["number"] for r in eff.front_at(records, 5)] == [3, 1]


def test_checkpoints_are_geometric_in_compute_and_end_with_every_record() -> None:
    cum = [float(2**i) for i in range(11)]  # 1 … 1024
    points = eff.checkpoints(cum, 6)
    assert points[-1] == 11 and points == sorted(set(points))
    assert [cum[i - 1] for i in points] == [1, 4, 16, 64, 256, 1024]
    assert eff.checkpoints([], 5) == [0]
    # MACs of the order of a real run's: the top level, first * (total / first) ** 1, rounds above the total
    assert eff.checkpoints([7e9, 8e9, 29e9], 10)[-1] == 3


def test_compute_to_reach_and_the_median_of_runs_that_may_never_reach() -> None:
    curve = [(1.0, 0.5), (2.0, 0.9), (4.0, 1.0)]
    assert eff.compute_to_reach(curve, 0.9) == 2.0 and eff.compute_to_reach(curve, 1.01) is None
    assert eff.median([3.0, None, 1.0]) == 3.0  # the run that never reached it counts as last
    assert eff.median([None, None, 1.0]) is None and eff.median([2.0, 4.0]) == 3.0


def test_today_is_pinned_and_every_config_is_a_valid_run() -> None:
    from cachesearch.search import RunSettings

    assert eff.CONFIGS["today"] == {"sampler": "nsga2", "population": 24, "screen": "4", "n_train": 8,
                                    "warm_start": "baselines", "prefix_cache_mb": 0}
    for name, overrides in eff.CONFIGS.items():
        RunSettings(name=name, **overrides)


def test_the_budget_stops_a_run_between_trials_once_the_candidates_spent_it() -> None:
    budget = _Budget(10.0)
    outcome = SimpleNamespace(user_attrs={"result": {"macs": 6.0}})
    budget.trial(number=0, done=1, front=1, outcome=SimpleNamespace(user_attrs={"duplicate_of": 0, "result": {
        "macs": 6.0}}))
    budget.trial(number=1, done=2, front=1, outcome=outcome)
    with pytest.raises(KeyboardInterrupt):
        budget.trial(number=2, done=3, front=1, outcome=outcome)


def test_trial_records_in_completion_order_with_their_compute() -> None:
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    t0 = datetime(2030, 1, 1)
    specs = [(TrialState.COMPLETE, [0.1, 0.5], {"result": {"macs": 5.0, "macs_reused": 1.0}}, 3),
             (TrialState.PRUNED, None, {"screened": {}, "result": {"macs": 2.0}}, 1),
             (TrialState.PRUNED, None, {"duplicate_of": 0, "result": {"macs": 5.0}}, 2)]
    trials = []
    for number, (state, values, attrs, minutes) in enumerate(specs):
        t = create_trial(state=state, values=values, params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)},
                         user_attrs=attrs)
        t.number, t.datetime_start, t.datetime_complete = number, t0, t0 + timedelta(minutes=minutes)
        trials.append(t)
    records = eff.trial_records(SimpleNamespace(get_trials=lambda deepcopy=False: trials))
    assert [r["number"] for r in records] == [1, 2, 0]
    assert [(r["kind"], r["macs"]) for r in records] == [("screened", 2.0), ("duplicate", 0.0), ("evaluated", 5.0)]
    assert sum(r["reused"] for r in records) == 1.0 and records[-1]["values"] == [0.1, 0.5]


def test_the_components_space_has_the_components_family_only(tmp_path) -> None:
    space = load_space(_components_space(tmp_path))
    assert list(space.families) == ["components"] and space.name == "components"


def test_the_tables_give_the_compute_to_each_level_and_never_for_a_level_most_seeds_miss() -> None:
    cell = {"macs": 2.0e12, "of_today": 0.5, "wall_s": 300.0}
    result = {"target_hv": 2.0, "today_macs": 4.0e12, "table": {
        "tpe": {"seeds": 3, "final_hv": 2.1, "prefix_saving": 0.04,
                "90%": cell, "95%": cell, "100%": {"macs": None, "of_today": None, "wall_s": None}}}}
    text = eff.tables({"models": {"embedded:shapes-flux": result}})
    row = text.splitlines()[-1]
    assert row == "| tpe | 3 | 2.100 | 0.50× (2e+12, 300 s) | 0.50× (2e+12, 300 s) | never | 4.0% |"
    assert "final hypervolume 2.000 at 4e+12 MACs" in text
    prefix = eff.prefix_table({"cases": {"ecad": {"model": "m", "candidates": 9, "resumed": 3, "executed_macs": 9.0,
                                                   "reused_macs": 1.0, "saving": 0.1}}})
    assert prefix.splitlines()[-1] == "| ecad | m | 9 | 3 | 9 | 1 | 10.0% |"


def test_the_wall_target_compares_medians_over_seeds_and_the_loss_ratio() -> None:
    from benchmarks._search_wall import wall_summary, wall_table

    def run(arm: str, seed: int, hv: float, ratio: float) -> dict:
        return {"arm": arm, "seed": seed, "hv": hv, "ratio_median": ratio, "wall_s": 100.0 + seed, "front": 3,
                **({"baseline_ratio_median": 1.2 + seed / 10} if arm == "new" else {})}

    per = {"runs": [run("today", 0, 2.40, 1.0), run("today", 1, 2.50, 1.1), run("today", 2, 2.42, 0.9),
                    run("new", 0, 2.43, 1.0), run("new", 1, 2.30, 1.0), run("new", 2, 2.60, 1.0),
                    run("slow", 0, 2.41, 1.0), run("slow", 1, 2.41, 1.0), run("slow", 2, 2.41, 1.0),
                    run("loose", 0, 2.90, 1.3), run("loose", 1, 2.90, 1.3), run("loose", 2, 2.90, 1.1)]}
    wall_summary(per, ["today", "new", "slow", "loose"])
    assert per["today"]["hv_median"] == 2.42 and per["today"]["seeds"] == 3 and "met" not in per["today"]
    assert per["new"]["met"] is True  # median 2.43 >= 2.42, although seed 1 is below
    assert per["slow"]["met"] is False  # 2.41 < 2.42
    assert per["loose"]["met"] is False and per["loose"]["ratio_median"] == 1.3  # the held-out/train ratio > 1.2
    table = wall_table({"arms": {"today": "", "new": "", "slow": "", "loose": ""}, "models": {"m": per}})
    assert "| m | new | 3 | 100, 101, 102 | 3, 3, 3 | 2.430, 2.300, 2.600 | 2.430 | 1.000 | 1.300 | yes |" in table
    assert "| m | slow | 3 | 100, 101, 102 | 3, 3, 3 | 2.410, 2.410, 2.410 | 2.410 | 1.000 | – | no |" in table
    assert "| m | today | 3 |" in table and "| m | slow | 3 |" in table and table.count("| no |") == 2


def test_the_baselines_ratio_is_read_from_the_exported_index() -> None:
    import yaml

    from benchmarks._search_wall import baseline_ratio

    validated = [{"name": "steps-5", "quality": 0.05, "heldout": 0.065}, {"name": "steps-8", "quality": 0.01,
                 "heldout": 0.02}, {"name": "steps-10", "quality": 0.02, "heldout": 0.02},
                 {"name": "broken", "quality": 0.02, "heldout": None}]
    index = yaml.safe_load(yaml.safe_dump({"baselines": {"validated": validated}}))  # as read from index.yaml
    assert baseline_ratio(index) == {"baseline_ratio_median": 1.3}


def test_summarise_measures_every_config_against_the_median_of_todays_final_points() -> None:
    from benchmarks.search_efficiency import summarise

    def curve(config: str, seed: int, points: list[tuple[float, float, float]]) -> dict:
        return {"config": config, "seed": seed, "prefix_saving": 0.1 * seed,
                "points": [{"macs": m, "wall_s": w, "hv": hv} for m, w, hv in points]}

    today = [curve("today", s, [(1.0, 10.0, 1.0), (4.0 + s, 300.0, 2.0 + s / 10)]) for s in range(3)]
    fast = [curve("new", s, [(1.0, 10.0, 1.9), (2.0, 50.0, 2.1 + s / 10)]) for s in range(3)]
    slow = [curve("slow", s, [(1.0, 10.0, 1.0), (9.0, 80.0, 2.0)]) for s in range(2)]
    assert summarise(fast) is None  # no old default to measure against
    got = summarise(today + fast + slow)
    assert got["target_hv"] == 2.1 and got["today_macs"] == 5.0
    new = got["table"]["new"]
    assert new["seeds"] == 3 and new["final_hv"] == pytest.approx(2.2) and new["prefix_saving"] == pytest.approx(0.1)
    assert new["90%"] == {"macs": 1.0, "of_today": 0.2, "wall_s": 10.0}  # 1.9 >= 0.9 * 2.1 at the first point
    assert new["100%"] == {"macs": 2.0, "of_today": 0.4, "wall_s": 50.0}  # 2 of 3 seeds reach 2.1 at 2 MACs
    assert got["table"]["slow"]["100%"]["of_today"] is None  # neither seed reaches 2.1: never
    assert got["table"]["today"]["100%"]["macs"] == 6.0  # reached at 5 and 6 MACs, never by seed 0: the median 6
