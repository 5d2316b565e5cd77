"""A real two-node Ray cluster on this machine (``ray start`` head + a second node: separate raylets, loopback
only), ``cachesearch run --executor ray --address …`` on the embedded model, and the second node SIGKILLed while
it runs a trial: the trial is retried (``FailureConfig``) or failed with a reason, the study reaches its trial
budget, no finished trial is lost and the export loads."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from cachesearch.embedded import shapes
from cachesearch.schedule import load_front, load_schedule
from cachesearch.search.study import finished_count, open_storage

EMBEDDED_WEIGHTS = shapes.pipeline_path() / "unet" / "diffusion_pytorch_model.safetensors"
REPO = Path(__file__).resolve().parents[2]
TRIALS = 8
# Fast node-death detection by the GCS (defaults: 5 missed checks of 3 s, after a 5 s delay).
HEALTH_CHECK = {"RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "500",
                "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "3"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(ray_tmp: str) -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    token = Path(ray_tmp, "auth_token")
    if not token.is_file():
        token.write_text(secrets.token_hex(32))
    # Token authentication with the cluster's own token (not the user's ~/.ray/auth_token).
    return {**os.environ, **HEALTH_CHECK, "RAY_TMPDIR": ray_tmp, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token),
            "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": f"{REPO}:{path}" if path else str(REPO)}


def _ray_cli() -> str:
    exe = Path(sys.executable).with_name("ray")
    return str(exe) if exe.is_file() else (shutil.which("ray") or "ray")


def _session(pid: int) -> int | None:
    """The session id of a process (field 6 of /proc/PID/stat), None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[3])


def _processes(match: str) -> dict[int, str]:
    """pid → command line of this user's processes whose command line or session matches ``match`` (a temp dir
    or ``sid:N``)."""
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if (match.startswith("sid:") and str(_session(int(d.name))) == match[4:]) or match in cmd:
            found[int(d.name)] = cmd
    return found


def _kill(pids: dict[int, str]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _study(out: Path) -> optuna.Study:
    return optuna.load_study(study_name="cluster", storage=open_storage(str(out / "cluster" / "study.journal")))


@pytest.mark.slow
@pytest.mark.skipif(not EMBEDDED_WEIGHTS.is_file(), reason="embedded weights are absent")
def test_a_node_lost_mid_trial_loses_no_finished_trial(tmp_path: Path) -> None:
    pytest.importorskip("ray.tune", reason="ray is not installed (pip install 'cachesearch[ray]')")
    ray_tmp = tempfile.mkdtemp(prefix="csrc", dir="/tmp")  # short: Ray's socket paths have a length limit
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        _cluster_scenario(tmp_path, ray_tmp, nodes)
    finally:
        # Not `ray stop --force`: it kills every Ray process of this user on the machine, other clusters
        # included. Each node runs in its own session: kill those sessions, then anything under our temp dir.
        for node in nodes:
            _kill(_processes(f"sid:{node.pid}"))
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.wait(timeout=10)
        _kill(_processes(ray_tmp))
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _start_node(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``ray start … --block`` in its own session (``ray start`` stays the session leader, so SIGKILL to the
    session takes the node's raylet, object store and workers down at once: a host lost); returns once the
    node is up."""
    with log.open("wb") as f:
        node = subprocess.Popen([_ray_cli(), "start", "--block", *args], env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + 90
    while b"will now block" not in log.read_bytes():
        assert node.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
        time.sleep(0.2)
    return node


def _cluster_scenario(tmp_path: Path, ray_tmp: str, nodes: list[subprocess.Popen[bytes]]) -> None:
    env, port = _env(ray_tmp), _free_port()
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--num-gpus", "0",
              "--object-store-memory", str(80 * 2**20), "--disable-usage-stats"]
    t0 = time.monotonic()
    nodes.append(_start_node(["--head", "--port", str(port), "--include-dashboard", "false", "--dashboard-port",
                              str(_free_port()), "--temp-dir", ray_tmp, "--resources", json.dumps({"head_node": 1}),
                              *common], env, tmp_path / "head.log"))
    worker = _start_node(["--address", f"127.0.0.1:{port}", "--resources", json.dumps({"worker_node": 1}), *common],
                         env, tmp_path / "worker.log")
    nodes.append(worker)
    cluster_s = time.monotonic() - t0

    out, cache = tmp_path / "runs", tmp_path / "cache"
    cmd = [sys.executable, "-m", "cachesearch.cli", "run", "--name", "cluster", "--executor", "ray", "--address",
           f"127.0.0.1:{port}", "--workers", "2", "--trials", str(TRIALS), "--steps", "6", "--n-train", "3",
           "--n-heldout", "2", "--timeout", "0", "--out", str(out), "--cache-dir", str(cache), "-q"]
    t1 = time.monotonic()
    run = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    journal = out / "cluster" / "study.journal"
    before: dict[int, list[float] | None] = {}
    running: list[int] = []
    killed_at = None
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and run.poll() is None:
            # a trial evaluating on the second node: its worker process is titled ray::ImplicitFunc.train
            busy = [c for c in _processes(f"sid:{worker.pid}").values() if "ImplicitFunc.train" in c]
            if busy and journal.is_file():
                trials = _study(out).get_trials()
                running = [t.number for t in trials if t.state == TrialState.RUNNING]
                if sum(t.state == TrialState.COMPLETE for t in trials) >= 2 and running:
                    before = {t.number: t.values for t in trials if t.state == TrialState.COMPLETE}
                    _kill(_processes(f"sid:{worker.pid}"))
                    killed_at = time.monotonic() - t1
                    break
            time.sleep(0.2)
        assert killed_at is not None, "no trial ran on the second node before the run ended"
        text, _ = run.communicate(timeout=150)
    finally:
        if run.poll() is None:
            run.kill()
    run_s = time.monotonic() - t1
    assert run.returncode == 0, text[-4000:]
    assert worker.wait(timeout=10) == -signal.SIGKILL
    nodes.remove(worker)

    study = _study(out)
    trials = study.get_trials()
    print(f"\ncluster up in {cluster_s:.1f} s; run {run_s:.1f} s, second node killed at {killed_at:.1f} s with "
          f"trials {running} RUNNING and {len(before)} COMPLETE")
    for t in (t for t in trials if t.state != TrialState.WAITING):
        w = t.user_attrs.get("worker", {})
        print(f"  #{t.number} {t.state.name} node={str(w.get('node'))[:8]} pid={w.get('pid')} "
              f"retries={t.user_attrs.get('ray_retries')} reason={t.user_attrs.get('reason')} "
              f"from={t.user_attrs.get('requeued_from')}")
    took = sorted((t.datetime_complete - t.datetime_start).total_seconds() for t in trials
                  if t.state == TrialState.COMPLETE)
    print(f"per-trial wall time (s, 1 CPU per trial, two trials at once on 2 shared cores): "
          f"median {took[len(took) // 2]:.1f}, min {took[0]:.1f}, max {took[-1]:.1f}")
    assert finished_count(study) >= TRIALS
    assert not study.get_trials(states=(TrialState.RUNNING,)), "a trial was left RUNNING"
    for number, values in before.items():  # 0 finished trials lost or changed
        assert trials[number].state == TrialState.COMPLETE and trials[number].values == values
    for t in study.get_trials(states=(TrialState.FAIL,)):
        assert t.user_attrs.get("reason"), f"trial {t.number} failed without a reason"
    # The trial that was on the lost node (RUNNING at the kill, or started on it just before): retried by
    # FailureConfig with the error recorded, or failed with the reason and re-run once from the study.
    lost = [t for t in trials if t.user_attrs.get("ray_retries") or t.user_attrs.get("requeued")]
    assert lost, "no trial shows the lost node"
    for t in lost:
        for retry in t.user_attrs.get("ray_retries", []):
            # Ray's cause, as recorded: depending on which it notices first, the node's death or the dead actor
            # ("… is unavailable: … Connection reset by peer")
            assert "node" in retry["error"] or "actor" in retry["error"], retry
        if t.state == TrialState.FAIL:
            assert "worker lost" in t.user_attrs["reason"] and "node" in t.user_attrs["reason"], t.user_attrs
            reruns = [u for u in trials if u.user_attrs.get("requeued_from") == t.number]
            assert len(reruns) == 1 and reruns[0].state == TrialState.COMPLETE
            assert reruns[0].params == t.params
        else:
            assert t.state == TrialState.COMPLETE
    evaluated = [t.user_attrs["mask_key"] for t in trials
                 if t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs]
    assert len(evaluated) == len(set(evaluated)), "a mask was evaluated twice"

    front = load_front(out / "cluster" / "schedules")
    assert front.entries
    for entry in front.entries:
        load_schedule(out / "cluster" / "schedules" / entry.file)


def test_a_trial_whose_worker_was_lost_is_failed_with_the_reason_and_asked_again_first() -> None:
    """The path where Tune errors a trial whose node died instead of retrying it (one node loss counted as two
    failures): FAIL with the reason, not counted, re-run before the other waiting trials, at most twice."""
    pytest.importorskip("ray.tune", reason="ray is not installed (pip install 'cachesearch[ray]')")
    from cachesearch.search.executors.ray import StudySearcher

    study = optuna.create_study(directions=["minimize", "minimize"])
    study.enqueue_trial({"x": 1}, user_attrs={"baseline": "b1"})
    study.enqueue_trial({"x": 2}, user_attrs={"baseline": "b2"})
    searcher = StudySearcher.__new__(StudySearcher)
    searcher._ot_study = study
    trial = study.ask()
    trial.suggest_int("x", 0, 9)
    assert searcher._requeue(trial, "The actor died because its node has died. Node Id: abc")
    first = study.get_trials()[0]
    assert first.state == TrialState.FAIL and first.user_attrs["requeued"] and "node" in first.user_attrs["reason"]
    assert finished_count(study) == 0
    rerun = searcher._pop_requeued()  # asked before the older waiting trial (b2)
    assert rerun is not None and rerun.number == 2 and study.get_trials()[2].user_attrs["requeued_from"] == 0
    assert rerun.suggest_int("x", 0, 9) == 1 and study.get_trials()[2].user_attrs["baseline"] == "b1"
    assert searcher._requeue(rerun, "lost again")  # second loss: requeued once more
    again = searcher._pop_requeued()
    assert again is not None and not searcher._requeue(again, "lost a third time")  # then a plain FAIL
    assert searcher._pop_requeued() is None


def test_a_trial_errored_while_pending_its_retry_takes_the_retried_failure_as_its_cause() -> None:
    """Tune can error a trial a second time while it is PENDING for the retry of a lost node, leaving no new error
    entry (seen in CI: "worker error … the trial raised or its worker died" with the node's death recorded in
    ``ray_retries``). The recorded failure is the cause: the worker was lost, so the trial is re-enqueued."""
    pytest.importorskip("ray.tune", reason="ray is not installed (pip install 'cachesearch[ray]')")
    from cachesearch.search.executors.ray import StudySearcher
    from cachesearch.search.executors.ray_events import _DRIVER

    study = optuna.create_study(directions=["minimize", "minimize"])
    searcher = StudySearcher.__new__(StudySearcher)
    searcher._ot_study, searcher._completed_trials, searcher._ot_trials = study, set(), {}
    died = "The actor died because its node has died. Node Id: d7dc; the actor's node was terminated unexpectedly"
    for tune_id, retries in (("lost", [{"failure": 1, "error": died}]), ("raised", [])):
        trial = study.ask()
        trial.suggest_int("x", 0, 9)
        trial.set_user_attr("ray_retries", retries)
        searcher._ot_trials[tune_id] = trial
    saved = dict(_DRIVER)
    try:
        _DRIVER.update(tune_trials={}, progress=None)
        searcher.on_trial_complete("lost", None, error=True)
        searcher.on_trial_complete("raised", None, error=True)
    finally:
        _DRIVER.clear()
        _DRIVER.update(saved)
    lost, raised, rerun = study.get_trials()
    assert lost.state == TrialState.FAIL and lost.user_attrs["requeued"]
    assert "worker lost" in lost.user_attrs["reason"] and "node" in lost.user_attrs["reason"]
    assert rerun.state == TrialState.WAITING and rerun.user_attrs["requeued_from"] == lost.number
    assert raised.state == TrialState.FAIL and "requeued" not in raised.user_attrs
    assert raised.user_attrs["reason"].startswith("worker error (FailureConfig retries exhausted)")


def test_trials_a_restored_experiment_resumes_carry_the_new_driver_and_orphans_are_asked_again(tmp_path: Path) -> None:
    """Tuner.restore resumes the trials Tune had checkpointed on the new driver's workers: they are stamped with the
    new driver's runner information (seen in CI as a resumed trial counted under the killed driver's session, with
    a worker of the new one); a trial the dead driver asked after Tune's last checkpoint is failed and re-enqueued."""
    pytest.importorskip("ray.tune", reason="ray is not installed (pip install 'cachesearch[ray]')")
    from cachesearch.search.executors.ray import StudySearcher
    from cachesearch.search.executors.ray_events import _DRIVER
    from cachesearch.search.provenance import runner_attrs

    spec = str(tmp_path / "study.journal")
    study = optuna.create_study(study_name="s", storage=open_storage(spec), directions=["minimize", "minimize"])
    searcher = StudySearcher.__new__(StudySearcher)
    searcher.__dict__.update(_ot_study=study, _ot_trials={}, _completed_trials=set(), _storage_spec=spec,
                             _run_dir=str(tmp_path), _study_name="s", _sampler=None)
    dead = {"host": socket.gethostname(), "pid": 2**22 + 7, "session": "dead", "run_dir": "."}
    for tune_id in ("resumed", "unknown"):
        trial = study.ask()
        trial.suggest_int("x", 0, 9)
        for key, value in dead.items():
            trial.set_user_attr(key, value)
        if tune_id == "resumed":
            searcher._ot_trials[tune_id] = trial
    searcher.save(str(tmp_path / "searcher.pkl"))

    saved = dict(_DRIVER)
    try:
        _DRIVER.update(runner=runner_attrs("new", tmp_path), progress=None, sampler=None)
        restored = StudySearcher.__new__(StudySearcher)
        restored.restore(str(tmp_path / "searcher.pkl"))
    finally:
        _DRIVER.clear()
        _DRIVER.update(saved)
    resumed, unknown, rerun = study.get_trials()
    assert resumed.state == TrialState.RUNNING
    assert resumed.user_attrs["session"] == "new" and resumed.user_attrs["pid"] == os.getpid()
    assert unknown.state == TrialState.FAIL and unknown.user_attrs["requeued"]
    assert rerun.state == TrialState.WAITING and rerun.user_attrs["requeued_from"] == unknown.number
