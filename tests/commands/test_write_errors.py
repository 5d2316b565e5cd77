"""Folders a command cannot write are refused in one line before any work (issue 31 item 2): ``run --out`` on a
file or a read-only folder, ``generate --out`` in a read-only folder (checked before the model loads). A
read-only folder is a read-only tmpfs in a private mount namespace (``unshare -rm``) when the tests run as root
(root writes through mode 0555), else a mode-0555 folder. Also: ``generate`` limits torch threads as ``run``
does (item 18)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cachesearch.cli import app
from cachesearch.embedded import shapes

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
EMBEDDED_WEIGHTS = shapes.pipeline_path() / "unet" / "diffusion_pytorch_model.safetensors"
_PROBE = """
import json, sys
from typer.testing import CliRunner
from cachesearch.cli import app
result = CliRunner().invoke(app, sys.argv[1:], env={"COLUMNS": "250"})
print(json.dumps({"code": result.exit_code, "output": result.output, "loaded": "diffusers" in sys.modules}))
"""


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    done = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o ro tmpfs /mnt"], capture_output=True)
    return done.returncode == 0


def _in_readonly_folder(folder: Path, *args: str) -> dict:
    """Run ``cachesearch ARGS`` in a fresh interpreter while ``folder`` is read-only for it."""
    folder.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-c", _PROBE, *args]
    if os.geteuid() == 0:
        if not _namespaces_work():
            pytest.skip("running as root without user namespaces (unshare -rm): no way to make a read-only folder")
        cmd = ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o ro tmpfs "$0" && exec "$@"', str(folder), *cmd]
    else:
        folder.chmod(0o555)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    finally:
        folder.chmod(0o755)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_run_out_on_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "runs.txt").write_text("not a folder")
    result = runner.invoke(app, ["run", "--out", str(tmp_path / "runs.txt"), "-q"], env={"COLUMNS": "250"})
    assert result.exit_code == 2
    file = tmp_path / "runs.txt"
    assert result.output.strip() == f"error: --out {file}: is a file, not a folder; give a folder with --out"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.txt"]


def test_run_out_on_a_read_only_folder_is_one_line(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    seen = _in_readonly_folder(ro, "run", "--out", str(ro / "runs"), "--cache-dir", str(tmp_path / "cache"), "-q")
    assert seen["code"] == 2, seen["output"]
    line = seen["output"].strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith(f"error: --out {ro / 'runs'}: cannot write there (the nearest existing folder, {ro}): ")
    assert line.endswith("; give a folder you can write with --out")
    assert not seen["loaded"]  # refused before the model


def test_generate_out_in_a_read_only_folder_is_refused_before_generating(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    seen = _in_readonly_folder(ro, "generate", "--prompt", "a red circle", "--out", str(ro / "image.png"))
    assert seen["code"] == 2, seen["output"]
    assert seen["output"].strip().startswith(f"error: --out {ro}: cannot write there: ")
    assert not seen["loaded"]


def test_generate_out_on_a_folder_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["generate", "--prompt", "x", "--out", str(tmp_path)], env={"COLUMNS": "250"})
    assert result.exit_code == 2 and result.output.strip() == f"error: --out {tmp_path}: is a folder; give the PNG " \
                                                               f"file to write"


@pytest.mark.skipif(not EMBEDDED_WEIGHTS.is_file(), reason="embedded weights are absent")
def test_generate_limits_torch_threads_as_run_does(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    try:
        result = runner.invoke(app, ["generate", "--prompt", "a red circle", "--out", str(tmp_path / "a.png")])
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        result = runner.invoke(app, ["generate", "--prompt", "a red circle", "--out", str(tmp_path / "b.png"),
                                     "--threads", "3"])
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(1)
