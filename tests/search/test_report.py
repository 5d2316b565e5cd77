"""The report's claims: which baseline is beaten by which front schedule (hand-made export, exact rows), the
headline sentences, and baseline kinds that reach export and report as fields, whatever the names."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import yaml

from cachesearch.search import BaselineRow, Comparison, ExportEntry, ExportResult, compare_with_baselines, headline
from cachesearch.search.export import INDEX_FORMAT, QualityPair, load_export


def entry(file: str, trial: int, objective: float, heldout: float) -> ExportEntry:
    return ExportEntry(file=file, name=file[:-5], trial=trial, baseline=None, baseline_kind=None, policy={},
                       quality=QualityPair(train=heldout * 0.9, heldout=heldout, metric="m"), objective=objective,
                       cost_ratio=objective, speedup=1 / objective, latency_ms=None,
                       accuracy=QualityPair(train=None, heldout=None))


def row(name: str, kind: str, trial: int, cost: float, heldout: float | None, *, interval: int | None = None,
        branch: int = 0, best: bool = False) -> BaselineRow:
    policy = {"kind": kind, **({"interval": interval, "branch": branch} if interval else {})}
    return BaselineRow(name=name, kind=kind, trial=trial, state="complete", policy=policy, quality=0.01, cost=cost,
                       heldout=heldout, best_branch=best)


# Names say nothing about kinds on purpose: the comparison must read the kind field.
ENTRIES = [entry("a.yaml", 10, 0.30, 0.020), entry("b.yaml", 11, 0.50, 0.010), entry("c.yaml", 12, 0.80, 0.004)]
BASELINES = [
    row("half", "steps", 1, 0.50, 0.015),
    row("quarter", "steps", 2, 0.25, 0.05),
    row("dc-first", "deepcache", 3, 0.45, 0.012, interval=3),  # the papers' default N=3 b0
    row("dc-second", "deepcache", 4, 0.60, 0.009, interval=3, branch=11, best=True),  # deepest: best train loss
    row("dc-five", "deepcache", 5, 0.90, 0.030, interval=5, best=True),
    row("dc-five-other", "deepcache", 6, 0.95, 0.030, interval=5),  # not the reference interval, not best
    row("thresholds", "blockcaching", 7, 0.40, 0.010),  # Block Caching is plotted, not compared
    row("unvalidated", "steps", 8, 0.20, None),
    row("on-the-front", "steps", 11, 0.50, 0.010),  # the baseline trial is itself the best front schedule
]


def export(entries=ENTRIES, baselines=BASELINES) -> ExportResult:
    return ExportResult(schedules_dir=Path("s"), index_path=Path("s/index.yaml"), entries=list(entries),
                        front_trials=[], baselines=list(baselines), metric="m")


def test_each_compared_baseline_gets_the_best_front_schedule_at_no_higher_cost() -> None:
    assert compare_with_baselines(export()) == [
        Comparison("dc-first", "deepcache", 0.45, 0.012, "a.yaml", 0.30, 0.020),
        Comparison("dc-second", "deepcache", 0.60, 0.009, "b.yaml", 0.50, 0.010),
        Comparison("dc-five", "deepcache", 0.90, 0.030, "c.yaml", 0.80, 0.004),
        Comparison("quarter", "steps", 0.25, 0.05, None, None, None),
        Comparison("half", "steps", 0.50, 0.015, "b.yaml", 0.50, 0.010),
        Comparison("on-the-front", "steps", 0.50, 0.010, "b.yaml", 0.50, 0.010, itself=True),
    ]
    beaten = {c.baseline: c.schedule for c in compare_with_baselines(export()) if c.beaten}
    assert beaten == {"dc-five": "c.yaml", "half": "b.yaml"}


def test_headline_compares_with_deepcache_n3_b0_and_fewer_steps() -> None:
    # DeepCache's claim is about the papers' default N=3 b0, not the best-train-loss (deepest, near no-op) branch
    assert headline(export()) == [
        "DeepCache N=3 b0 (the papers' default) `dc-first` (cost 0.450, held-out 0.012): not beaten",
        "Fewer steps: 1 of 3 step counts are beaten at equal or lower cost (e.g. `half` held-out 0.015 vs "
        "`b.yaml` 0.01 at cost 0.500 ≤ 0.500)",
    ]
    better = [replace(ENTRIES[0], quality=QualityPair(train=0.01, heldout=0.011, metric="m")), *ENTRIES[1:]]
    assert headline(export(entries=better))[0] == (
        "DeepCache N=3 b0 (the papers' default) `dc-first` (cost 0.450, held-out 0.012): beaten by `a.yaml` "
        "(cost 0.300, held-out 0.011)")
    assert headline(export(entries=[])) == [
        "DeepCache N=3 b0 (the papers' default) `dc-first` (cost 0.450, held-out 0.012): not beaten",
        "Fewer steps: 0 of 3 step counts are beaten at equal or lower cost",
    ]


def test_kinds_survive_the_index_file(tmp_path: Path) -> None:
    index = tmp_path / "schedules" / "index.yaml"
    index.parent.mkdir()
    doc = {"format": INDEX_FORMAT, "metric": "m", "schedules": [e.to_dict() for e in ENTRIES],
           "baselines": {"validated": [b.to_dict() for b in BASELINES]}}
    index.write_text(yaml.safe_dump(doc, sort_keys=False))
    loaded = load_export(tmp_path)
    assert loaded.entries == ENTRIES and loaded.baselines == BASELINES
    assert compare_with_baselines(loaded) == compare_with_baselines(export())


def test_an_index_written_before_objective_existed_reads_the_cost_ratio() -> None:
    old = ENTRIES[0].to_dict()
    del old["objective"], old["baseline_kind"]
    assert ExportEntry.from_dict(old) == ENTRIES[0]


def test_front_composition_counts_each_categorical_choice_on_evaluated_trials_and_on_the_front() -> None:
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    from cachesearch.search.report import _composition_lines, front_composition

    cat = {"mask.scale_shift": CategoricalDistribution(["off", "lstsq"]), "x": FloatDistribution(0, 1)}

    def t(number: int, ss: str, state=TrialState.COMPLETE, **attrs) -> optuna.trial.FrozenTrial:
        tr = create_trial(params={"mask.scale_shift": ss, "x": 0.5}, distributions=cat, values=[0.1, 0.5],
                          user_attrs=attrs, state=state)
        tr.number = number
        return tr

    trials = [t(0, "off"), t(1, "lstsq"), t(2, "lstsq"), t(3, "lstsq", duplicate_of=1),
              t(4, "off", state=TrialState.PRUNED)]
    exp = replace(export(), front_trials=[trials[1], trials[0]])
    assert front_composition(trials, exp) == {"mask.scale_shift": {"lstsq": (2, 1), "off": (1, 1)}}
    assert "| `mask.scale_shift` | `lstsq` | 2 | 1 |" in _composition_lines(trials, exp)
    assert _composition_lines([], exp) == []
