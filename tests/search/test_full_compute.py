"""The full-compute trial (cost 1, loss ~1e-13) is on the Pareto front but is no schedule: the search's front
count, the export and the plots all leave it out (issue 31 item 9: "front 50" while 49 files were exported, and
its loss stretched the plot's log axis to 1e-13)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial

from cachesearch.search import report_plot
from cachesearch.search.export import ExportResult
from cachesearch.search.objective import Objectives
from cachesearch.search.study import front_size, is_full_compute, pareto_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study() -> optuna.Study:
    study = optuna.create_study(directions=["minimize", "minimize"])
    points = [(1e-13, 1.0), (0.002, 0.9), (0.01, 0.6), (0.05, 0.4), (0.2, 0.2), (0.3, 0.5)]
    for i, (loss, cost) in enumerate(points):
        study.add_trial(create_trial(values=[loss, cost], params={"x": float(i)},
                                     distributions={"x": FloatDistribution(0, 10)},
                                     user_attrs={"mask_key": f"m{i}", "policy": {"kind": "deepcache"}}))
    return study


def test_the_front_count_leaves_full_compute_out() -> None:
    study = _study()
    front = pareto_trials(study)
    assert len(front) == 5 and sum(map(is_full_compute, front)) == 1
    assert front_size(study) == 4


def test_the_plot_axis_is_not_stretched_by_full_compute(tmp_path: Path, monkeypatch) -> None:
    seen = {}

    def capture(fig, path):
        seen["ylim"] = fig.axes[0].get_ylim()
        return Path(path)

    monkeypatch.setattr(report_plot, "save_figure", capture)
    prep = SimpleNamespace(study=_study(), objectives=Objectives(kind="cost"), settings=SimpleNamespace(name="x"))
    export = ExportResult(schedules_dir=tmp_path, index_path=tmp_path / "index.yaml", entries=[], front_trials=[],
                          metric="stlpips-alex")
    report_plot.plot_pareto(prep, export, tmp_path / "pareto.png")
    low, high = seen["ylim"]
    assert 1e-4 < low < 0.002 and high > 0.3, seen
