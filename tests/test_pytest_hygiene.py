"""The test suite leaves nothing behind in pytest's temporary folder for tests that pass (issue 31 item 15:
~1.2 GB of trained pipelines stayed there after a run); a failed test keeps its folder, to look at."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_passed_tests_leave_no_files_in_the_temporary_folder(tmp_path: Path) -> None:
    (tmp_path / "test_write.py").write_text(
        "def test_passes(tmp_path):\n    (tmp_path / 'big.bin').write_bytes(b'0' * 1_000_000)\n\n"
        "def test_fails(tmp_path):\n    (tmp_path / 'kept.bin').write_bytes(b'1')\n    assert False\n")
    base = tmp_path / "base"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-m", "pytest", str(tmp_path / "test_write.py"), "-q", "-c",
                           str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path), "--basetemp", str(base),
                           "-p", "no:cacheprovider"], capture_output=True, text=True, env=env, timeout=300)
    assert "1 failed, 1 passed" in done.stdout, done.stdout[-2000:]
    left = sorted(p.name for p in base.rglob("*.bin"))
    assert left == ["kept.bin"], left
