"""Commands that load no model import no torch (issue 31 item 16: ``--help``, ``pick`` and ``validate`` without
``--model`` were ~2.8 s each, all of it torch), and the production path still applies a schedule after a plain
``import cachesearch``. Each check runs in a fresh interpreter: this test process has torch loaded already."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "artifacts" / "examples" / "embedded" / "schedules"
HEAVY = ("torch", "diffusers", "optuna", "ray", "matplotlib", "transformers")

_PROBE = """
import json, sys
from typer.testing import CliRunner
from cachesearch.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
print(json.dumps({"code": result.exit_code, "output": result.output,
                  "heavy": [m for m in HEAVY if m in sys.modules]}))
""".replace("HEAVY", repr(HEAVY))


def _probe(*args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, env=env,
                          timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("args", "code"), [
    (["--help"], 0),
    (["run", "--help"], 0),
    (["generate", "--help"], 0),
    (["pick", str(EXAMPLE / "index.yaml"), "--max-cost", "0.6"], 0),
    (["validate", str(EXAMPLE)], 0),
    # a run that cannot start fails before torch: a cluster that does not answer, an unreachable database
    (["run", "--executor", "ray", "--address", "127.0.0.1:1", "--out", "/nonexistent-cs/runs", "-q"], 2),
    (["run", "--storage", "postgresql+psycopg://u:pw@127.0.0.1:1/db", "--out", "/nonexistent-cs/runs", "-q"], 2),
])
def test_a_command_that_loads_no_model_imports_no_torch(args: list[str], code: int) -> None:
    seen = _probe(*args)
    assert seen["code"] == code, seen["output"]
    allowed = {"optuna"} if "--storage" in args else set()  # opening the storage is Optuna's job
    assert set(seen["heavy"]) <= allowed, f"cachesearch {' '.join(args)} imported {seen['heavy']}"


def test_import_cachesearch_is_light_and_apply_still_finds_the_runtime() -> None:
    code = f"""
import sys
import cachesearch as cs
sched = cs.load_schedule({str(sorted(EXAMPLE.glob('t*.yaml'))[0])!r})
print('torch' in sys.modules, 'cachesearch.runtime' in sys.modules)
try:
    sched.apply(object())  # the runtime loads on first apply and refuses the target
except Exception as e:
    print(type(e).__name__, 'cachesearch.runtime' in sys.modules, 'no runtime is registered' in str(e))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    light, applied = done.stdout.strip().splitlines()
    assert light == "False False"
    assert applied.split()[1:] == ["True", "False"], applied
