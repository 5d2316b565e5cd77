"""``cachesearch run`` / ``export`` / ``report`` / ``validate`` end to end on the embedded model (real evaluator,
few steps, few images): exported files load and apply, resume after SIGKILL, constraints, the Ray executor on
two CPU workers, and a clear message for a broken space file."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from cachesearch.cli import app
from cachesearch.embedded import shapes
from cachesearch.models._loaders import load_model
from cachesearch.schedule import load_schedule
from cachesearch.search.study import finished_count, open_storage

EMBEDDED_WEIGHTS = shapes.pipeline_path() / "unet" / "diffusion_pytorch_model.safetensors"
pytestmark = pytest.mark.skipif(not EMBEDDED_WEIGHTS.is_file(), reason="embedded weights are absent")
runner = CliRunner()
optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One reference cache for the module (references are computed once)."""
    return str(tmp_path_factory.mktemp("cs-cache"))


def _study(out: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(str(out / name / "study.journal")))


def _invoke(args: list[str]) -> str:
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_run_exports_schedules_that_load_and_apply_with_constraints(tmp_path: Path, cache: str) -> None:
    out = tmp_path / "runs"
    args = ["run", "--name", "e2e", "--trials", "6", "--steps", "4", "--n-train", "2", "--n-heldout", "2",
            "--timeout", "0", "--min-speedup", "1.5", "--out", str(out), "--cache-dir", cache, "-q"]
    text = _invoke(args)
    assert "Pareto front of e2e" in text and "report:" in text
    run_dir = out / "e2e"
    index = yaml.safe_load((run_dir / "schedules" / "index.yaml").read_text())
    assert index["schedules"], text
    study = _study(out, "e2e")
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert any(t.constraints["min_speedup"] > 0 for t in done), "expected a candidate violating --min-speedup"
    loaded = load_model("embedded")
    for entry in index["schedules"]:
        sched = load_schedule(run_dir / "schedules" / entry["file"])
        assert sched.metrics.quality.heldout is not None and sched.metrics.quality.train is not None
        assert sched.metrics.latency.cost_ratio <= 1 / 1.5 + 1e-9  # the constraint holds on the front
        with sched.applied(loaded.pipe):
            images = loaded.pipe(prompt=["a red circle on a blue background"], output_type="pt",
                                 generator=torch.Generator().manual_seed(0), **sched.pipeline_kwargs()).images
        assert torch.isfinite(images).all()
    for name in ("report.md", "pareto.png", "profile.png", "run.yaml", "space.yaml"):
        assert (run_dir / name).is_file(), name
    first = run_dir / "schedules" / index["schedules"][0]["file"]
    assert "model ok" in _invoke(["validate", str(first), "--model", "embedded"])
    before = {p.name: p.read_text() for p in (run_dir / "schedules").glob("t*.yaml")}
    assert "schedule(s) in" in _invoke(["export", "--name", "e2e", "--out", str(out), "--cache-dir", cache])
    after = {p.name: p.read_text() for p in (run_dir / "schedules").glob("t*.yaml")}
    assert before.keys() == after.keys()
    assert "report:" in _invoke(["report", "--name", "e2e", "--out", str(out), "--cache-dir", cache])


def test_resume_after_sigkill_loses_and_repeats_nothing(tmp_path: Path, cache: str) -> None:
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "cachesearch.cli", "run", "--name", "killed", "--space", "steps", "--trials", "8",
           "--steps", "6", "--n-train", "4", "--n-heldout", "2", "--timeout", "0", "--out", str(out),
           "--cache-dir", cache, "--no-export", "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ})
    journal = out / "killed" / "study.journal"
    before: dict[int, list[float]] = {}
    running: list[int] = []
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.is_file():
                try:
                    trials = _study(out, "killed").get_trials()
                except KeyError:  # the journal exists but the run has not written the study's creation yet
                    time.sleep(0.05)
                    continue
                done = [t for t in trials if t.state == TrialState.COMPLETE]
                running = [t.number for t in trials if t.state == TrialState.RUNNING and t.params]
                if len(done) >= 2 and running:
                    workers = _children(proc.pid)
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(timeout=30)
                    break
            time.sleep(0.05)
        assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr.read().decode()[-2000:])
    finally:
        if proc.poll() is None:
            proc.kill()
    # the pool's workers do not outlive their SIGKILLed driver (they would hold their models' memory forever)
    assert workers, "the run evaluates in a worker pool (--workers 2 by default)"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and [w for w in workers if _state(w) not in ("gone", "Z")]:
        time.sleep(0.2)
    assert not [w for w in workers if _state(w) not in ("gone", "Z")], "orphaned pool workers"

    study = _study(out, "killed")
    before = {t.number: t.values for t in study.get_trials(states=(TrialState.COMPLETE,))}
    orphans = [t.number for t in study.get_trials(states=(TrialState.RUNNING,))]
    assert orphans, "the process was killed between trials; expected one RUNNING"

    # resume: only the name (settings come from the run), same budget
    _invoke(["run", "--name", "killed", "--out", str(out), "--cache-dir", cache, "--no-export", "-q"])
    study = _study(out, "killed")
    trials = study.get_trials()
    assert finished_count(study) == 8
    for number, values in before.items():  # nothing finished was lost or changed
        assert trials[number].state == TrialState.COMPLETE and trials[number].values == values
    for number in orphans:
        assert trials[number].state == TrialState.FAIL and trials[number].user_attrs["requeued"]
        reruns = [t for t in trials if t.user_attrs.get("requeued_from") == number]
        assert len(reruns) == 1 and reruns[0].state.is_finished()  # re-run exactly once
        if trials[number].params:  # a trial killed before its parameters were suggested has none to repeat
            assert reruns[0].params == trials[number].params
    evaluated = [t.user_attrs["mask_key"] for t in trials
                 if t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs]
    assert len(evaluated) == len(set(evaluated)), "a mask was evaluated twice"


def _stat(pid: int) -> list[str]:
    """Fields of ``/proc/PID/stat`` after the command name (state first); ``[]`` once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _state(pid: int) -> str:
    fields = _stat(pid)
    return fields[0] if fields else "gone"


def _ppid(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[1]) if fields else 0


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux ``/proc``)."""
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(int(p.name)) == pid]


def _most_at_once(trials: list) -> int:
    """The most of ``trials`` running at one time (from when each was asked to when it was told)."""
    # (time, +1 asked / -1 told): at equal times -1 sorts first, a trial told as another is asked ends first
    events = sorted([(t.datetime_start, 1) for t in trials] + [(t.datetime_complete, -1) for t in trials])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def _kill_cluster(ray_tmp: str) -> None:
    """Kill what is left of the Ray cluster the killed driver started (only processes under its temp dir)."""
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
            continue
        try:
            cmdline = (pid_dir / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if ray_tmp in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_dir.name), signal.SIGKILL)


def test_ray_executor_two_cpu_workers_restores_after_the_driver_is_killed(
    tmp_path: Path, cache: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("ray.tune")
    out = tmp_path / "runs"
    ray_tmp = tempfile.mkdtemp(prefix="csray", dir="/tmp")  # short: Ray's socket paths have a length limit
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    home = tmp_path / "home"  # the local cluster gets its own token: nothing may be written to ~/.ray
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    saved = {k: v for k, v in os.environ.items() if k.startswith("RAY_AUTH")}
    for k in saved:
        monkeypatch.delenv(k)
    try:
        _ray_restore_scenario(out, cache, ray_tmp)
        assert not (home / ".ray").exists()
    finally:
        _kill_cluster(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
        for k in [k for k in os.environ if k.startswith("RAY_AUTH")]:  # own_token() set them in this process
            del os.environ[k]
        os.environ.update(saved)


def _ray_restore_scenario(out: Path, cache: str, ray_tmp: str) -> None:
    cmd = [sys.executable, "-m", "cachesearch.cli", "run", "--name", "ray", "--executor", "ray", "--workers", "2",
           "--trials", "8", "--steps", "6", "--n-train", "3", "--n-heldout", "2", "--n-heldout-max", "2",
           "--timeout", "0", "--out",
           str(out), "--cache-dir", cache, "--no-export", "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ})
    exp = out / "ray" / "ray" / "tune-1"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            if any(exp.glob("searcher-state-*.pkl")) and (out / "ray" / "study.journal").is_file():
                trials = _study(out, "ray").get_trials()
                if sum(t.state == TrialState.COMPLETE for t in trials) >= 2 and any(
                        t.state == TrialState.RUNNING for t in trials):
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(timeout=30)
                    break
            time.sleep(0.2)
        assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr.read().decode()[-3000:])
    finally:
        if proc.poll() is None:
            proc.kill()
        _kill_cluster(ray_tmp)
    before = {t.number: t.values for t in _study(out, "ray").get_trials(states=(TrialState.COMPLETE,))}
    # both splits' references were built on the Ray workers before the first trial and merged into the cache (the
    # held-out split is the pool adaptive validation may grow into, --n-heldout-max: 2 here, 64 by default)
    metas = [json.loads(p.read_text()) for p in Path(cache, "references").glob("*.json")]
    made = {(m["key"]["n_images"], m["key"]["num_inference_steps"]) for m in metas}
    assert {(3, 6), (2, 6)} <= made
    assert not list(Path(cache, "references").glob("*.tmp"))

    text = _invoke(["run", "--name", "ray", "--out", str(out), "--cache-dir", cache, "--timeout", "0"])
    assert "restoring the Ray Tune experiment tune-1" in text
    study = _study(out, "ray")
    trials = study.get_trials()
    assert finished_count(study) >= 8 and not study.get_trials(states=(TrialState.RUNNING,))
    for number, values in before.items():
        assert trials[number].state == TrialState.COMPLETE and trials[number].values == values
    evaluated = [t for t in trials if t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs]
    keys = [t.user_attrs["mask_key"] for t in evaluated]
    assert len(keys) == len(set(keys)), "a mask was evaluated twice"
    by_session: dict[str, set[int]] = {}
    for t in evaluated:
        by_session.setdefault(t.user_attrs["session"], set()).add(t.user_attrs["worker"]["pid"])
    assert len(by_session) == 2  # the killed driver's and the resumed one's
    (killed,) = {trials[n].user_attrs["session"] for n in before}
    for session, pids in by_session.items():  # never the driver; Tune may replace an idle actor, so count overlap
        assert os.getpid() not in pids
        assert _most_at_once([t for t in evaluated if t.user_attrs["session"] == session]) <= 2  # --workers 2
    # a trial Tune resumed ran on the resumed driver's workers and is counted as that session's
    resumed = next(p for s, p in by_session.items() if s != killed)
    assert by_session[killed].isdisjoint(resumed), by_session
    # workers are reused across trials: each process built its evaluator (model + references) exactly once
    assert [t.user_attrs["worker"]["loads"] for t in evaluated] == [1] * len(evaluated)
    assert len(evaluated) > sum(len(p) for p in by_session.values()), "no worker evaluated two trials"
    assert all("git" in t.user_attrs and "schedule" in t.user_attrs for t in evaluated)
    assert (out / "ray" / "schedules" / "index.yaml").is_file()
    import ray

    assert not ray.is_initialized()


def test_a_broken_space_file_gives_a_clear_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("format: cachesearch/space@1\nname: bad\nmask:\n  families: [deepcache]\n"
                   "  deepcache: {interval: {low: 0, high: 4}}\n")
    result = runner.invoke(app, ["run", "--name", "bad", "--space", str(bad), "--out", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 2
    assert f"error: {bad}: mask.deepcache.interval.low: expected an integer >= 1, got 0" in result.output
