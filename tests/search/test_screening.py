"""Multi-fidelity screening: exact lower bounds prune only candidates that cannot reach the front, survivors
get exactly the values of one full evaluation, and the pieces (image ranges, merge, front) are right."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from cachesearch.evaluate import EvalResult
from cachesearch.schedule import DeepCache, StepSet
from cachesearch.search import run_search
from cachesearch.search.objective import KnownMasks, Objectives, Outcome, Screening, evaluate_candidate
from cachesearch.search.study import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _known(*points: tuple[float, float], screened: tuple[float, float] | None = None) -> KnownMasks:
    known = KnownMasks()
    for i, values in enumerate(points):
        known.add(i, Outcome(values=values, user_attrs={"mask_key": f"k{i}"}))
    if screened is not None:
        known.add(99, Outcome(values=screened, user_attrs={"mask_key": "s", "screened": {"images": 2}}))
    return known


def test_front_keeps_non_dominated_feasible_full_evaluations_only() -> None:
    known = _known((0.1, 0.5), (0.2, 0.4), (0.15, 0.6), (0.05, 0.9), screened=(0.0, 0.1))
    assert known.front() == [(0.05, 0.9), (0.1, 0.5), (0.2, 0.4)]
    infeasible = KnownMasks()
    infeasible.add(0, Outcome(values=(0.0, 0.1), constraints={"max_quality": 0.5}, user_attrs={"mask_key": "x"}))
    assert infeasible.front() == []


def test_dominated_uses_the_exact_bound_and_the_constraint() -> None:
    s = Screening((2, 4))
    front = [(0.05, 0.9), (0.1, 0.5)]
    assert s.dominated(0.11, 0.5, front, Objectives()) == (0.1, 0.5)
    assert s.dominated(0.1, 0.5, front, Objectives()) is None  # equal loss: could tie, not provably dominated
    assert s.dominated(0.2, 0.45, front, Objectives()) is None  # cheaper than every front point
    assert s.dominated(0.2, 0.45, front, Objectives(max_quality=0.15))[0] == 0.2


@pytest.mark.parametrize("text,expected", [("2,4", (2, 4)), ("3", (3,)), ("off", None), ("", None)])
def test_parse(text: str, expected) -> None:
    parsed = Screening.parse(text)
    assert (parsed.stages if parsed else None) == expected


@pytest.mark.parametrize("bad", ["4,2", "0", "a,b", "2,2"])
def test_parse_refuses_bad_values_naming_the_flag(bad: str) -> None:
    with pytest.raises(ValueError, match="--screen"):
        Screening.parse(bad)


def test_merge_is_the_image_weighted_mean_and_refuses_gaps() -> None:
    def part(first: int, stop: int, q: float) -> EvalResult:
        return EvalResult(schedule="s", split="train", valid=True, reason=None, metric="m", quality=q, psnr=30.0,
                          ssim=None, accuracy=1.0, cost_ratio=0.5, latency_ms=None, baseline_ms=None, speedup=None,
                          latency_spread=None, n_images=stop - first, seconds=1.0, images=[first, stop])

    merged = EvalResult.merge([part(0, 2, 0.1), part(2, 8, 0.2)], total=8)
    assert merged.quality == pytest.approx((2 * 0.1 + 6 * 0.2) / 8)
    assert merged.n_images == 8 and merged.images is None and merged.seconds == 2.0 and merged.ssim is None
    assert EvalResult.merge([part(0, 2, 0.1), part(2, 4, 0.2)], total=8).images == [0, 4]
    with pytest.raises(ValueError, match="consecutive"):
        EvalResult.merge([part(0, 2, 0.1), part(4, 8, 0.2)])


def test_a_provably_dominated_candidate_stops_after_its_first_images(make_evaluator) -> None:
    ev = make_evaluator(n_train=8)
    bad = ev.compile(DeepCache(interval=4, branch=0))
    cost = ev.cost_ratio(bad)
    known = _known((1e-6, cost * 0.99))  # a near-perfect, cheaper front point
    out = evaluate_candidate(ev, DeepCache(interval=4, branch=0), Objectives(), known=known,
                             screening=Screening((2, 4)))
    assert out.ok and out.user_attrs["screened"]["images"] == 2 and out.user_attrs["screened"]["of"] == 8
    assert ev.ranges == [("train", slice(0, 2))]
    assert out.user_attrs["screened"]["bound"] == pytest.approx(out.user_attrs["result"]["quality"] * 2 / 8)


def test_a_surviving_candidate_gets_exactly_the_full_evaluation(make_evaluator) -> None:
    policy = DeepCache(interval=2, branch=0)
    full = evaluate_candidate(make_evaluator(n_train=8), policy, Objectives())
    ev = make_evaluator(n_train=8)
    known = _known((10.0, 0.01))  # a front point that dominates nothing
    staged = evaluate_candidate(ev, policy, Objectives(), known=known, screening=Screening((2, 4)))
    assert "screened" not in staged.user_attrs
    assert [r for _, r in ev.ranges] == [slice(0, 2), slice(2, 4), slice(4, 8)]
    assert staged.values[1] == full.values[1]
    assert staged.values[0] == pytest.approx(full.values[0], rel=1e-12)
    assert staged.user_attrs["result"]["n_images"] == 8 and staged.user_attrs["result"]["images"] is None


def test_without_a_front_the_candidate_is_evaluated_in_one_go(make_evaluator) -> None:
    ev = make_evaluator(n_train=8)
    out = evaluate_candidate(ev, StepSet(count=4), Objectives(), known=KnownMasks(), screening=Screening((2, 4)))
    assert out.ok and ev.ranges == [("train", slice(0, 8))]


def test_a_run_screens_candidates_but_never_baselines(settings, make_evaluator) -> None:
    s = settings(space="joint", n_train=8, trials=45, sampler="random", screen="7")
    ev = make_evaluator(n_train=8)
    summary = run_search(s, evaluator=ev, export=False)
    study = optuna.load_study(study_name=s.name, storage=open_storage(str(s.run_dir / "study.journal")))
    trials = study.get_trials()
    screened = [t for t in trials if "screened" in t.user_attrs]
    assert screened and all(t.state == TrialState.PRUNED and t.values is None for t in screened)
    assert not any("baseline" in t.user_attrs for t in screened if "duplicate_of" not in t.user_attrs)
    assert summary.screened == sum("duplicate_of" not in t.user_attrs for t in screened)
    front = {(t.values[0], t.values[1]) for t in study.best_trials}
    for t in screened:  # each was dominated by a front point of its time, hence by the final front
        q = t.user_attrs["screened"]["bound"]
        c = t.user_attrs["result"]["cost_ratio"]
        assert any(fq < q and fc <= c for fq, fc in front) or math.isinf(c)
