"""Study logic with a fake evaluator: baselines first, dedup, failures, constraints, resume checks, orphans,
Ctrl-C, export, and the Ray searcher's explicit failure recording (without starting Ray)."""

from __future__ import annotations

import math
import os
import signal
import socket
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from cachesearch.schedule import load_schedule
from cachesearch.search import SearchError, compare_with_baselines, export_run, mask_key, pareto_trials, run_search
from cachesearch.search.study import budget_counts, finished_count, open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(settings):
    return optuna.load_study(study_name=settings.name, storage=open_storage(str(settings.run_dir / "study.journal")))


def _dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


def test_baselines_run_first_and_trials_carry_their_schedule(settings, make_evaluator) -> None:
    s = settings(trials=10)
    ev = make_evaluator()
    summary = run_search(s, evaluator=ev, export=False)
    assert summary.stopped == "budget"
    study = _study(s)
    trials = study.get_trials()
    enqueued = study.user_attrs["cachesearch.baselines"]["enqueued"]
    assert enqueued and [t.user_attrs.get("baseline") for t in trials[: len(enqueued)]] == enqueued[: len(trials)]
    assert study.metric_names == ["quality", "cost_ratio"]
    assert study.user_attrs["cachesearch.config"]["objectives"]["directions"] == ["minimize", "minimize"]
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 10 == finished_count(study)
    for t in done:
        attrs = t.user_attrs
        assert attrs["mask_key"].startswith("sha256:") and attrs["schedule"]["blocks"]
        assert attrs["host"] == socket.gethostname() and "git" in attrs and attrs["result"]["valid"] is True
        assert attrs["device"].startswith("cpu: ")
        assert t.values[1] == pytest.approx(attrs["result"]["cost_ratio"])


def test_candidates_with_an_evaluated_mask_are_not_run_again(settings, make_evaluator) -> None:
    # the steps space under DDIM has 7 candidates (2..8 steps): 14 trials must repeat masks
    s = settings(space="steps", trials=14, sampler="random")
    ev = make_evaluator()
    run_search(s, evaluator=ev, export=False)
    study = _study(s)
    done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    dups = [t for t in study.get_trials() if "duplicate_of" in t.user_attrs]
    assert dups, "expected repeated candidates"
    by_number = {t.number: t for t in done}
    for t in dups:  # a duplicate is PRUNED, without values: its mask's values are on the evaluated trial
        first = by_number[t.user_attrs["duplicate_of"]]
        assert t.state == TrialState.PRUNED and t.values is None
        assert first.user_attrs["mask_key"] == t.user_attrs["mask_key"] and "duplicate_of" not in first.user_attrs
    assert ev.calls["train"] == len({t.user_attrs["mask_key"] for t in done}) == len(done)


def test_failing_candidates_become_failed_trials_with_reasons(settings, make_evaluator) -> None:
    s = settings(space="steps", trials=7, sampler="random")
    ev = make_evaluator()
    modes = {2: "raise", 3: "invalid", 4: "nan"}
    ev.fail_when = lambda sched: modes.get(sched.num_steps)
    summary = run_search(s, evaluator=ev, export=False)
    assert summary.stopped == "budget"
    failed = {t.user_attrs["schedule"]["num_inference_steps"]: t.user_attrs["reason"]
              for t in _study(s).get_trials(states=(TrialState.FAIL,))}
    assert "out of memory" in failed[2]
    assert failed[3].startswith("invalid output: 2 of 2 images contain NaN")
    assert "quality is not a finite number" in failed[4]
    assert all(t.state.is_finished() for t in _study(s).get_trials() if t.state != TrialState.WAITING)


def test_constraints_are_recorded_and_the_front_is_feasible(settings, make_evaluator) -> None:
    s = settings(trials=16, max_quality=0.05, min_speedup=1.3)
    run_search(s, evaluator=make_evaluator(), export=False)
    study = _study(s)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert all(set(t.constraints) == {"max_quality", "min_speedup"} for t in done)
    infeasible = [t for t in done if t.values[0] > 0.05 or 1 / t.values[1] < 1.3]
    assert infeasible, "the budget should include infeasible candidates"
    front = pareto_trials(study)
    assert front and all(t.values[0] <= 0.05 and 1 / t.values[1] >= 1.3 - 1e-9 for t in front)


def test_resume_refuses_different_objectives_space_or_sampler(settings, make_evaluator) -> None:
    s = settings(trials=3)
    run_search(s, evaluator=make_evaluator(), export=False)
    with pytest.raises(SearchError) as info:
        run_search(replace(s, max_quality=0.1, trials=4), evaluator=make_evaluator(), export=False)
    assert "objective max_quality: study has None, this run has 0.1" in str(info.value)
    with pytest.raises(SearchError, match=r"search space \(file text\)"):
        run_search(replace(s, space="deepcache"), evaluator=make_evaluator(), export=False, space_given=True)
    other_weights = make_evaluator()
    other_weights._weights_hash = "sha256:" + "0" * 64  # the same architecture with other weights (a fine-tune)
    with pytest.raises(SearchError, match=r"model weights \(hash\): study has 'sha256:"):
        run_search(s, evaluator=other_weights, export=False)
    with pytest.raises(SearchError) as info:
        run_search(replace(s, num_steps=6), evaluator=make_evaluator(num_inference_steps=6), export=False)
    assert "\n  - steps: study has 8, this run has 6\n" in str(info.value)
    # a study that create_study(load_if_exists=True) would silently reuse with other directions
    storage = open_storage(str(Path(s.out) / "other" / "study.journal"))
    optuna.create_study(study_name="other", storage=storage, directions=["maximize", "minimize"])
    with pytest.raises(SearchError, match="was not created by cachesearch"):
        run_search(replace(s, name="other"), evaluator=make_evaluator(), export=False)


def test_orphaned_running_trial_is_failed_and_requeued(settings, make_evaluator) -> None:
    s = settings(trials=3, space="steps", sampler="random")
    captured = {}
    run_search(s, evaluator=make_evaluator(), export=False, on_prepared=lambda p: captured.update(prep=p))
    study = _study(s)
    orphan = study.ask()  # as a killed process left it: RUNNING, parameters suggested, never told
    for key, value in {"host": socket.gethostname(), "pid": _dead_pid(), "session": "gone",
                       "run_dir": str(s.run_dir.resolve())}.items():
        orphan.set_user_attr(key, value)
    captured["prep"].space.suggest(orphan)
    params = dict(orphan.params)
    summary = run_search(replace(s, trials=8), evaluator=make_evaluator(), export=False)
    assert any("recovered 1 trial" in n for n in summary.notes)
    study = _study(s)
    failed = study.trials[orphan.number]
    assert failed.state == TrialState.FAIL and failed.user_attrs["requeued"] is True
    assert failed.user_attrs["reason"].startswith("orphaned")
    rerun = [t for t in study.get_trials() if t.user_attrs.get("requeued_from") == orphan.number]
    assert len(rerun) == 1 and rerun[0].state == TrialState.COMPLETE and rerun[0].params == params
    assert finished_count(study) == 8  # the orphan does not count; nothing finished was lost or repeated
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 8  # PRUNED: duplicates


def test_ctrl_c_finishes_the_trial_then_a_second_one_aborts_it(settings, make_evaluator) -> None:
    s = settings(trials=20)
    ev = make_evaluator()
    count = {"n": 0}

    def interrupt(schedule) -> None:
        count["n"] += 1
        if count["n"] == 3:
            os.kill(os.getpid(), signal.SIGINT)  # first Ctrl-C: this trial still finishes

    ev.before_evaluate = interrupt
    summary = run_search(s, evaluator=ev, export=True)
    assert summary.stopped == "interrupted" and summary.export is None
    study = _study(s)
    assert finished_count(study) == 3 and not study.get_trials(states=(TrialState.RUNNING,))

    def abort(schedule) -> None:
        raise KeyboardInterrupt  # what the second Ctrl-C raises inside an evaluation

    ev.before_evaluate = abort
    summary = run_search(s, evaluator=ev, export=False)
    assert summary.stopped == "interrupted"
    study = _study(s)
    aborted = [t for t in study.get_trials(states=(TrialState.FAIL,)) if t.user_attrs.get("requeued")]
    assert len(aborted) == 1 and aborted[0].user_attrs["reason"].startswith("interrupted")
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert any(t.user_attrs.get("requeued_from") == aborted[0].number for t in waiting)
    assert finished_count(study) == 3


def test_export_validates_on_heldout_before_writing(settings, make_evaluator) -> None:
    s = settings(trials=14)
    ev = make_evaluator()
    stale = s.run_dir / "schedules" / "t9999-old.yaml"
    stale.parent.mkdir(parents=True)
    stale.write_text("old")
    summary = run_search(s, evaluator=ev)
    export = summary.export
    assert export.entries and not stale.exists()
    index = yaml.safe_load(export.index_path.read_text())
    assert [e["file"] for e in index["schedules"]] == [e.file for e in export.entries]
    assert ev.calls["heldout"] >= len(export.entries)
    study = _study(s)
    for e in export.entries:
        sched = load_schedule(export.schedules_dir / e.file)
        q = sched.metrics.quality
        assert q.heldout is not None and q.train == pytest.approx(study.trials[e.trial].values[0])
        assert sched.provenance.study == s.name and sched.provenance.trial == e.trial
        assert mask_key(sched) == study.trials[e.trial].user_attrs["mask_key"]
        tail = sched.metrics.tail  # per-image loss distributions: format @4
        assert sched.format == "cachesearch/schedule@4" and tail.train.mean == pytest.approx(q.train)
        assert tail.heldout.n == 2 and tail.heldout.ci95[0] <= q.heldout <= tail.heldout.ci95[1]
        assert tail.heldout.max >= tail.heldout.p90 >= tail.heldout.median and tail.heldout.threshold == 0.05
        row = next(r for r in index["schedules"] if r["file"] == e.file)
        assert row["tail"]["heldout"]["p90"] == tail.heldout.p90 and e.stats("heldout") == tail.heldout
        assert math.isfinite(sched.metrics.latency.cost_ratio) and sched.metrics.latency.cost_ratio < 1
        assert oct(os.stat(export.schedules_dir / e.file).st_mode)[-3:] != "600"
    assert (s.run_dir / "report.md").is_file() and (s.run_dir / "pareto.png").stat().st_size > 1000
    journal = str((s.run_dir / "study.journal").resolve())
    assert yaml.safe_load((s.run_dir / "run.yaml").read_text())["study"]["storage"] == "study.journal"
    report_text = (s.run_dir / "report.md").read_text()
    assert journal not in report_text and str(s.run_dir.resolve()) not in report_text
    assert "- **storage**: `study.journal` (relative to this folder)" in report_text
    assert "| held-out mean [95 % interval] | median | p90 | max | > 0.05 | pairs |" in report_text
    assert (s.run_dir / "profile.png").is_file()
    calls, train_calls = ev.calls["heldout"], ev.calls["train"]
    again, report = export_run(s.name, s.out, evaluator=ev)  # `cachesearch export`: held-out results are cached
    assert again.entries == export.entries
    assert ev.calls["heldout"] == calls and ev.calls["train"] == train_calls and report.is_file()


def test_ray_searcher_records_failures_explicitly(settings, make_evaluator, tmp_path) -> None:
    pytest.importorskip("ray.tune")
    import pickle

    from cachesearch.search.executors.ray import _RESULT_KEY, StudySearcher, _DefineByRun

    s = settings(trials=2)
    captured = {}
    run_search(s, evaluator=make_evaluator(), export=False, on_prepared=lambda p: captured.update(prep=p))
    study = _study(s)
    resolved = captured["prep"].space
    searcher = StudySearcher(space=_DefineByRun(resolved), metric=["quality", "cost_ratio"], mode=["min", "min"],
                             sampler=optuna.samplers.RandomSampler(seed=0), study_name=s.name,
                             storage=study._storage, storage_spec=str(s.run_dir / "study.journal"),
                             run_dir=str(s.run_dir))
    a, b, c = (searcher.suggest(k) for k in ("a", "b", "c"))
    assert a["__cachesearch_trial_number"] != b["__cachesearch_trial_number"]
    searcher.on_trial_complete("a", result=None, error=True)
    searcher.on_trial_complete("b", result={"quality": None, "cost_ratio": None,
                                            _RESULT_KEY: '{"values": null, "reason": "invalid output: NaN", '
                                                         '"constraints": {}, "user_attrs": {}}'})
    restored = pickle.loads(pickle.dumps(searcher))  # what Tune does with tuner.pkl / checkpoints
    restored.on_trial_complete("c", result={"quality": 0.1, "cost_ratio": 0.5, _RESULT_KEY:
                                            '{"values": [0.1, 0.5], "reason": null, "constraints": {}, '
                                            '"user_attrs": {"mask_key": "sha256:x"}}'})
    study = _study(s)
    ta, tb, tc = (study.trials[cfg["__cachesearch_trial_number"]] for cfg in (a, b, c))
    assert ta.state == TrialState.FAIL and ta.user_attrs["reason"].startswith("worker error")
    assert tb.state == TrialState.FAIL and tb.user_attrs["reason"] == "invalid output: NaN"
    assert tc.state == TrialState.COMPLETE and tc.values == [0.1, 0.5]


def test_any_optuna_storage_url_works(settings, make_evaluator, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    s = settings(name="rdb", trials=3, storage=url, space="steps")
    summary = run_search(s, evaluator=make_evaluator(), export=False)
    assert summary.storage == url and not (s.run_dir / "study.journal").exists()
    study = optuna.load_study(study_name="rdb", storage=url)
    assert finished_count(study) == 3 and study.user_attrs["cachesearch.config"]["format"] == "cachesearch/study@1"
    with pytest.raises(SearchError, match="--storage: cannot open 'postgresql://"):
        run_search(replace(s, name="pg", storage="postgresql://nobody@127.0.0.1:1/none"),
                   evaluator=make_evaluator(), export=False)


def test_baseline_kinds_reach_export_and_report_whatever_their_names(settings, make_evaluator, monkeypatch) -> None:
    from cachesearch.search.space import ResolvedSpace

    named = ResolvedSpace.baselines
    monkeypatch.setattr(ResolvedSpace, "baselines",
                        lambda self: [replace(b, name=f"b{i}") for i, b in enumerate(named(self))])
    s = settings(trials=30)
    summary = run_search(s, evaluator=make_evaluator())
    study = _study(s)
    baselines = [t for t in study.get_trials() if "baseline" in t.user_attrs]
    assert baselines and all(t.user_attrs["baseline"].startswith("b") for t in baselines)
    assert {t.user_attrs["baseline_kind"] for t in baselines} == {"steps", "deepcache", "blockcaching"}
    for t in baselines:  # the kind is the family of the baseline's policy
        assert t.user_attrs["baseline_kind"] == t.user_attrs["policy"]["kind"]
    export = summary.export
    kinds = {t.user_attrs["baseline"]: t.user_attrs["baseline_kind"] for t in baselines}
    assert export.baselines and all(r.kind == kinds[r.name] for r in export.baselines)
    assert all(e.baseline_kind == kinds[e.baseline] for e in export.entries if e.baseline)
    index = yaml.safe_load(export.index_path.read_text())
    assert all(r["kind"] == kinds[r["name"]] for r in index["baselines"]["validated"])
    compared = {c.kind for c in compare_with_baselines(export)}
    assert compared == {"steps", "deepcache"}
    report = (s.run_dir / "report.md").read_text()
    assert any(line.startswith("- Fewer steps: ") for line in report.splitlines())
    assert any(line.startswith("- DeepCache N=3 b0 (the papers' default) `b") for line in report.splitlines())


def test_a_resumed_run_says_so_with_its_finished_trials(settings, make_evaluator) -> None:
    from cachesearch.search.executors.base import Progress

    class Notes(Progress):
        def __init__(self) -> None:
            self.notes: list[str] = []

        def note(self, text: str) -> None:
            self.notes.append(text)

    s = settings(trials=3)
    first = Notes()
    run_search(s, first, evaluator=make_evaluator(), export=False)
    assert not any(n.startswith("resuming") for n in first.notes)
    again = Notes()
    run_search(replace(s, trials=4), again, evaluator=make_evaluator(), export=False)
    assert "resuming run unit (3 finished trials)" in again.notes


def test_a_run_whose_preparation_fails_leaves_no_folder(settings, make_evaluator, tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("format: cachesearch/space@1\nname: bad\nmask:\n  families: [nosuch]\n")
    s = settings(space=str(bad))
    with pytest.raises(Exception, match="nosuch"):
        run_search(s, evaluator=make_evaluator(), export=False, space_given=True)
    assert not s.run_dir.exists()


def test_budget_counts_reads_the_study_once_so_a_trial_finishing_meanwhile_is_counted_once() -> None:
    """A shared study's trial can finish between two reads; counted from one read it is either finished or
    running, never neither (two reads made a process ask one trial too many after the others had exported)."""
    study = optuna.create_study(directions=["minimize", "minimize"])
    for _ in range(3):
        study.add_trial(optuna.trial.create_trial(values=[0.1, 0.5]))
    live = study.ask()

    class FinishesAfterEachRead:
        def __init__(self) -> None:
            self.reads = 0

        def get_trials(self, deepcopy: bool = True, states=None):  # noqa: ANN001, ANN202
            trials = study.get_trials(deepcopy=False, states=states)
            self.reads += 1
            if self.reads == 1:
                study.tell(live, [0.2, 0.4])  # another process finishes its trial right after this read
            return trials

    view = FinishesAfterEachRead()
    done, running = budget_counts(view)
    assert (done, running) == (3, 1) and view.reads == 1
    assert budget_counts(study) == (4, 0) == (finished_count(study), 0)
