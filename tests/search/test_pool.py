"""The local process pool (``--workers N > 1``): trials run in worker processes, each mask is evaluated once,
the values equal the in-process loop's, and a worker killed mid-trial costs only a re-enqueued trial."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

import cachesearch as cs
from cachesearch.embedded import shapes
from cachesearch.search import RunSettings, run_search
from cachesearch.search.executors.base import Progress
from cachesearch.search.study import open_storage

pytestmark = pytest.mark.skipif(
    not (shapes.pipeline_path() / "unet" / "diffusion_pytorch_model.safetensors").is_file(),
    reason="embedded weights are absent",
)
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _settings(tmp_path: Path, name: str, workers: int, trials: int = 14) -> RunSettings:
    return RunSettings(name=name, model="embedded", num_steps=4, n_train=2, n_heldout=2, trials=trials, timeout=None,
                       sampler="random", seed=0, workers=workers, space="deepcache", out=str(tmp_path / "runs"),
                       profile_prompts=2)


def _by_mask(s: RunSettings) -> dict[str, tuple[float, float]]:
    study = optuna.load_study(study_name=s.name, storage=open_storage(str(s.run_dir / "study.journal")))
    return {t.user_attrs["mask_key"]: tuple(t.values) for t in study.get_trials(states=(TrialState.COMPLETE,))}


def test_pool_trials_run_in_workers_with_the_in_process_values(tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    one = _settings(tmp_path, "one", workers=1)
    two = _settings(tmp_path, "two", workers=2)
    run_search(one, cache_dir=cache, export=False)
    summary = run_search(two, cache_dir=cache, export=False)
    study = optuna.load_study(study_name=two.name, storage=open_storage(str(two.run_dir / "study.journal")))
    trials = [t for t in study.get_trials() if t.state != TrialState.WAITING]  # baselines beyond the budget wait
    assert len(trials) == 14 and not [t for t in trials if t.state not in (TrialState.COMPLETE, TrialState.PRUNED)]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    pids = {t.user_attrs["worker"]["pid"] for t in complete}
    # workers evaluated, the driver did not (on a loaded machine one worker may finish all before the other loads)
    assert 1 <= len(pids) <= 2 and os.getpid() not in pids
    keys = [t.user_attrs["mask_key"] for t in complete]
    assert len(keys) == len(set(keys))  # no mask evaluated twice, even while two ran at once
    a, b = _by_mask(one), _by_mask(two)
    assert set(a) == set(b)  # random proposals do not depend on results: the same masks
    for key, (q, c) in a.items():
        assert b[key][1] == c and b[key][0] == pytest.approx(q, rel=1e-6, abs=1e-9)
    assert summary.trials_this_session == len(complete) + summary.screened


class _KillAfterFirstTrial(Progress):
    """When the driver records its first worker-evaluated trial, kills the other pool worker (the one still running
    a trial) and notes the time: trials asked after it must run on the restarted pool."""

    def __init__(self) -> None:
        self.killed: list[int] = []
        self.at: datetime | None = None

    def trial(self, *, number: int, done: int, front: int, outcome: Any) -> None:
        import psutil

        finisher = outcome.user_attrs.get("worker", {}).get("pid")
        if self.killed or finisher is None:
            return
        kids = [p for p in psutil.Process().children(recursive=True)
                if "spawn_main" in " ".join(p.cmdline()) and p.pid != finisher]
        if kids:
            self.at = datetime.now()
            self.killed.append(kids[0].pid)
            os.kill(kids[0].pid, signal.SIGKILL)


def test_a_worker_killed_mid_trial_is_re_enqueued_and_the_run_completes(tmp_path: Path) -> None:
    s = replace(_settings(tmp_path, "kill", workers=2, trials=12), num_steps=8, n_train=4, space="steps")
    progress = _KillAfterFirstTrial()
    held: list[Any] = []  # a caller that keeps the run's Prepared (on_prepared) keeps its pool object alive
    run_search(s, progress, cache_dir=str(tmp_path / "cache"), export=False, on_prepared=held.append)
    assert progress.killed
    study = optuna.load_study(study_name=s.name, storage=open_storage(str(s.run_dir / "study.journal")))
    trials = study.get_trials()
    lost = [t for t in trials if t.state == TrialState.FAIL]
    assert lost and all("worker process died" in t.user_attrs["reason"] and t.user_attrs.get("requeued") for t in lost)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) >= 12 - len(lost)
    later = [t for t in finished if progress.at is not None and t.datetime_start > progress.at]
    assert later and all(t.user_attrs["worker"]["pid"] != progress.killed[0] for t in later if "worker" in t.user_attrs)
    # the pool started after the kill is the run's too: its processes end with the run, as the first pool's do
    deadline = time.monotonic() + 20
    while _pool_workers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _pool_workers()


def _pool_workers() -> list[int]:
    """This process's live spawned worker processes."""
    import psutil

    alive = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(p.cmdline()):
                alive.append(p.pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def test_the_export_scores_held_out_pairs_on_the_workers_with_the_in_process_values(tmp_path: Path) -> None:
    from cachesearch.search.executors.pool import heldout_runner
    from cachesearch.search.run import open_run

    cache = str(tmp_path / "cache")
    s = replace(_settings(tmp_path, "held", workers=2, trials=6), n_heldout=2, heldout_max=4)
    run_search(s, cache_dir=cache, export=False)
    prep = open_run(s.name, s.out, cache_dir=cache)
    sched = prep.ev.compile(cs.DeepCache(interval=3, branch=0))
    jobs = [(sched, 0, 2, False), (sched, 2, 4, False)]
    with heldout_runner(prep, 2) as run:
        results = run(jobs)
    mine = [prep.ev.evaluate(sched, split="heldout", images=slice(a, b)) for _, a, b, _ in jobs]
    for got, want in zip(results, mine):
        assert got.valid and got.images == want.images
        assert got.losses == pytest.approx(want.losses, rel=1e-6, abs=1e-9)


class _WorkersAtSearchStart(Progress):
    """Notes the worker processes alive when the trial loop starts."""

    def __init__(self) -> None:
        self.at_start: set[int] | None = None

    def start(self, *, total: int | None, done: int, timeout: float | None) -> None:
        import psutil

        self.at_start = {p.pid for p in psutil.Process().children(recursive=True)
                         if "spawn_main" in " ".join(p.cmdline())}


def test_a_run_starts_its_workers_before_it_prepares_and_validates_on_them(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers' start-up (imports, model, metric) overlaps the driver's preparation, not the search's
    ``--timeout``; the search and the export's held-out validation share the one pool."""
    from cachesearch.search.executors import pool as pool_module

    started = []
    real = pool_module.start_pool
    monkeypatch.setattr(pool_module, "start_pool", lambda *a, **k: started.append(a) or real(*a, **k))
    s = replace(_settings(tmp_path, "early", workers=2, trials=6), num_steps=8, n_train=4, space="steps")
    progress = _WorkersAtSearchStart()
    summary = run_search(s, progress, cache_dir=str(tmp_path / "cache"))
    assert summary.export is not None and summary.export.front_trials
    study = optuna.load_study(study_name=s.name, storage=open_storage(str(s.run_dir / "study.journal")))
    pids = {t.user_attrs["worker"]["pid"] for t in study.get_trials() if "worker" in t.user_attrs}
    assert progress.at_start is not None and len(progress.at_start) == 2  # up before the first trial was asked
    assert pids and pids <= progress.at_start
    assert len(started) == 1  # neither the search nor the held-out validation started another pool
