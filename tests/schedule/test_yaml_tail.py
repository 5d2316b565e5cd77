"""Format @4: per-image loss distributions in ``metrics.tail`` (older formats load unchanged, refuse the key)."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import pytest

import cachesearch as cs
from cachesearch.schedule import LossStats, TailMetrics, dump_schedule, load_schedule, parse_schedule
from cachesearch.schedule._untrusted import strict_yaml_load

GOLDEN = Path(__file__).parent / "golden"


def _doc() -> dict:
    return strict_yaml_load((GOLDEN / "v4_tail.yaml").read_text())


def test_v4_golden_reads_every_statistic():
    s = load_schedule(GOLDEN / "v4_tail.yaml")
    held = s.metrics.tail.heldout
    assert (held.n, held.mean, held.median, held.p90, held.max, held.over) == (64, 0.0267, 0.0063, 0.0769, 0.2679,
                                                                               0.125)
    assert held.ci95 == (0.0171, 0.0389) and held.threshold == 0.05 and held.get("p90") == 0.0769
    assert s.metrics.tail.train.ci95 is None and s.metrics.tail.train.cvar == 0.052


def test_a_schedule_without_tail_statistics_is_written_in_an_older_format():
    s = load_schedule(GOLDEN / "v4_tail.yaml")
    older = s.with_updates(metrics=replace(s.metrics, tail=None))
    assert older.format == "cachesearch/schedule@2"  # a reference run, nothing newer
    assert parse_schedule(strict_yaml_load(dump_schedule(older))) == older


def test_tail_statistics_are_refused_in_a_v3_file():
    doc = _doc()
    doc["format"] = "cachesearch/schedule@3"
    with pytest.raises(cs.ScheduleError, match=r"metrics\.tail: .* need format: cachesearch/schedule@4"):
        parse_schedule(doc)


@pytest.mark.parametrize(("split", "key", "value", "message"), [
    ("heldout", "over", 1.5, "metrics.tail.heldout.over: expected a share in [0, 1]"),
    ("heldout", "p90", -0.1, "metrics.tail.heldout.p90: expected a number >= 0.0"),
    ("heldout", "ci95", [0.3, 0.1], "metrics.tail.heldout.ci95: expected [low, high] with low <= high"),
    ("heldout", "ci95", [0.1], "metrics.tail.heldout.ci95: expected [low, high]"),
    ("train", "n", 0, "metrics.tail.train.n: expected an integer >= 1"),
    ("train", "max", None, "metrics.tail.train.max: expected a number"),
    ("train", "worst", 1.0, "metrics.tail.train: unknown key(s) ['worst']"),
    ("train", "threshold", "_delete", "metrics.tail.train: missing required key(s) ['threshold']"),
])
def test_malformed_tail_statistics_name_the_field(split, key, value, message):
    doc = copy.deepcopy(_doc())
    if value == "_delete":
        del doc["metrics"]["tail"][split][key]
    else:
        doc["metrics"]["tail"][split][key] = value
    with pytest.raises(cs.ScheduleError) as err:
        parse_schedule(doc)
    assert message in str(err.value)


def test_loss_stats_validate_on_construction():
    with pytest.raises(cs.ScheduleError, match="over: expected a share"):
        LossStats(n=4, mean=0.1, median=0.1, p90=0.1, cvar=0.1, max=0.1, over=2.0, threshold=0.05)
    with pytest.raises(cs.ScheduleError, match="stat: expected one of"):
        LossStats(n=4, mean=0.1, median=0.1, p90=0.1, cvar=0.1, max=0.1, over=0.0, threshold=0.05).get("p99")
    assert TailMetrics().train is None
