"""Picking a schedule from an exported front by budget (cs.load_front / Front.pick / cachesearch pick)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

import cachesearch as cs

EXAMPLE = Path(__file__).resolve().parents[2] / "artifacts" / "examples" / "embedded" / "schedules"


@pytest.fixture()
def front_dir(tmp_path):
    """A small front: three real schedule files with hand-set metrics in the index."""
    src = sorted(EXAMPLE.glob("t*.yaml"))[:3]
    rows = []
    for (loss, cost, speed), f in zip([(0.30, 0.10, 9.0), (0.02, 0.40, 2.4), (0.001, 0.90, 1.1)], src):
        shutil.copy(f, tmp_path / f.name)
        rows.append({"file": f.name, "name": f.stem, "trial": 1, "quality": {"metric": "stlpips-alex",
                     "train": loss / 2, "heldout": loss}, "cost_ratio": cost, "speedup": speed, "latency_ms": None})
    (tmp_path / "index.yaml").write_text(yaml.safe_dump({"format": "cachesearch/index@1", "metric": "stlpips-alex",
                                                         "schedules": rows}, sort_keys=False))
    return tmp_path, [f.name for f in src]


def test_pick_lowest_loss_within_a_budget_or_cheapest_within_a_loss(front_dir):
    d, names = front_dir
    front = cs.load_front(d / "index.yaml")
    assert front.choose(max_cost=0.5).file == names[1]
    assert front.choose(max_cost=1.0).file == names[2]
    assert front.choose(min_speedup=2.0).file == names[1]
    assert front.choose(max_loss=0.05).file == names[1]  # cheapest within the bound
    assert front.choose(max_loss=0.05, split="train").file == names[1]
    assert front.choose(max_loss=0.2, split="train").file == names[0]  # train losses are halved
    assert front.choose(max_cost=1.0, max_loss=0.01).file == names[2]
    sched = front.pick(max_cost=0.5)
    assert isinstance(sched, cs.Schedule) and sched == cs.load_schedule(d / names[1])
    assert cs.load_front(d).path == d / "index.yaml"  # a folder works too


def test_nothing_fits_names_the_closest_option(front_dir):
    d, names = front_dir
    front = cs.load_front(d / "index.yaml")
    with pytest.raises(cs.ScheduleError, match=rf"fits max_cost=0.05; the cheapest is {names[0]} \(loss 0.3"):
        front.pick(max_cost=0.05)
    with pytest.raises(cs.ScheduleError, match=rf"has heldout loss <= 0.0001; the best is {names[2]}"):
        front.pick(max_loss=0.0001)
    with pytest.raises(cs.ScheduleError, match=rf"within max_cost=0.5 has heldout loss <= 0.01; the best there is "
                                               rf"{names[1]}"):
        front.pick(max_cost=0.5, max_loss=0.01)
    with pytest.raises(cs.ScheduleError, match="give a budget"):
        front.pick()
    with pytest.raises(cs.ScheduleError, match="max_latency_ms: this front records no latency_ms"):
        front.pick(max_latency_ms=100)
    with pytest.raises(cs.ScheduleError, match="max_cost: expected a non-negative number"):
        front.pick(max_cost=-1)


@pytest.mark.parametrize("bad", ["/etc/passwd", "../x.yaml", "sub/x.yaml"])
def test_index_files_may_only_name_files_beside_them(front_dir, bad):
    d, _ = front_dir
    doc = yaml.safe_load((d / "index.yaml").read_text())
    doc["schedules"][0]["file"] = bad
    (d / "index.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(cs.ScheduleError, match=r"schedules\[0\]\.file: .* must be a plain file name"):
        cs.load_front(d / "index.yaml")


def test_the_committed_example_front_loads_and_picks():
    front = cs.load_front(EXAMPLE / "index.yaml")
    assert len(front.entries) == len(list(EXAMPLE.glob("t*.yaml"))) >= 10 and front.metric == "stlpips-alex"
    chosen = front.choose(max_cost=0.4)
    assert chosen.cost_ratio <= 0.4
    assert all(e.loss("heldout") >= chosen.loss("heldout") for e in front.entries
               if e.cost_ratio is not None and e.cost_ratio <= 0.4)


def test_pick_command_prints_the_file(front_dir):
    from typer.testing import CliRunner

    from cachesearch.cli import app

    d, names = front_dir
    res = CliRunner().invoke(app, ["pick", str(d / "index.yaml"), "--max-cost", "0.4"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[0] == str(d / names[1])
    res = CliRunner().invoke(app, ["pick", str(d / "index.yaml"), "--max-cost", "0.01"])
    assert res.exit_code == 2 and "the cheapest is" in res.output


def _with_tail(d: Path) -> None:
    """Index rows get held-out distributions: the second schedule has the best mean but a broken image."""
    doc = yaml.safe_load((d / "index.yaml").read_text())
    tails = [(0.30, 0.40, 0.5), (0.02, 0.09, 0.30), (0.001, 0.002, 0.004)]
    for row, (mean, p90, worst) in zip(doc["schedules"], tails):
        row["tail"] = {"heldout": {"n": 64, "mean": mean, "median": mean / 2, "p90": p90, "cvar": worst, "max": worst,
                                   "over": 0.1, "threshold": 0.05, "ci95": [mean * 0.8, mean * 1.3]}}
    doc["schedules"].append({**doc["schedules"][1], "file": doc["schedules"][0]["file"], "cost_ratio": 0.45,
                             "quality": {"metric": "stlpips-alex", "train": 0.02, "heldout": 0.03},
                             "tail": {"heldout": {"n": 64, "mean": 0.03, "median": 0.02, "p90": 0.04, "cvar": 0.05,
                                                  "max": 0.06, "over": 0.02, "threshold": 0.05}}})
    (d / "index.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def test_pick_by_p90_or_max_bounds_the_tail_not_the_mean(front_dir):
    d, names = front_dir
    _with_tail(d)
    front = cs.load_front(d / "index.yaml")
    assert front.choose(max_cost=0.5).cost_ratio == 0.40  # best mean
    assert front.choose(max_cost=0.5, stat="p90").cost_ratio == 0.45  # best worst tenth
    assert front.choose(max_loss=0.05, stat="max").file == names[2]  # only that one has no image above 0.05
    assert front.choose(max_loss=0.1, stat="p90").cost_ratio == 0.40  # cheapest whose p90 <= 0.1
    held = front.entries[1].stats("heldout")
    assert held.ci95 == pytest.approx((0.016, 0.026)) and front.entries[1].loss("heldout", "max") == 0.30
    with pytest.raises(cs.ScheduleError, match=r"has heldout p90 loss <= 0.001; the best is .*p90 0.002"):
        front.pick(max_loss=0.001, stat="p90")
    with pytest.raises(cs.ScheduleError, match=r"stat: expected one of \['mean', 'p90', 'max'\]"):
        front.pick(max_cost=0.5, stat="median")


def test_an_index_without_statistics_says_how_to_get_them(front_dir):
    d, _ = front_dir
    front = cs.load_front(d / "index.yaml")
    assert front.entries[0].stats("heldout") is None
    with pytest.raises(cs.ScheduleError, match=r"records no heldout p90 .* re-export the run"):
        front.pick(max_cost=0.5, stat="p90")


def test_malformed_index_statistics_name_the_row(front_dir):
    d, _ = front_dir
    _with_tail(d)
    doc = yaml.safe_load((d / "index.yaml").read_text())
    doc["schedules"][1]["tail"]["heldout"]["over"] = 3
    (d / "index.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(cs.ScheduleError, match=r"schedules\[1\]\.tail\.heldout\.over: expected a share"):
        cs.load_front(d / "index.yaml")


def test_pick_command_takes_the_statistic(front_dir):
    from typer.testing import CliRunner

    from cachesearch.cli import app

    d, names = front_dir
    _with_tail(d)
    res = CliRunner().invoke(app, ["pick", str(d / "index.yaml"), "--max-loss", "0.05", "--stat", "max"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[0] == str(d / names[2])
    assert "p90 0.002, max 0.004, 10% over 0.05 on 64 images" in res.output
    res = CliRunner().invoke(app, ["pick", str(d / "index.yaml"), "--max-cost", "0.5", "--stat", "p99"])
    assert res.exit_code == 2 and "stat: expected one of" in res.output and "Traceback" not in res.output
