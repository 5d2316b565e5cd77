"""The GPU suite's cheap checks: the script parses, and the summary of the committed CPU dry run (issue 15) is
rebuilt with every target line and no machine paths. The dry run itself takes ~2 minutes, so it is not run
here: `bash benchmarks/gpu_suite.sh --device cpu --tiny` refreshes benchmarks/results/gpu_suite_dryrun_cpu/."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DRY = ROOT / "benchmarks" / "results" / "gpu_suite_dryrun_cpu"


def test_suite_script_parses():
    subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu_suite.sh")], check=True)


def test_summary_rebuilds_from_dry_run(tmp_path):
    for f in DRY.glob("*.json"):
        if f.name != "summary.json":
            shutil.copy(f, tmp_path / f.name)
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_suite_summary.py"), str(tmp_path),
                          "--part", "profile:0:1"], check=True, capture_output=True, text=True).stdout
    assert "time-share bound" in out and "all-R overhead" in out
    doc = json.loads((tmp_path / "summary.json").read_text())
    assert len(doc["targets"]) == 5 and doc["rows"] and doc["bounds"]
    assert {r["part"] for r in doc["rows"]} == {"sd15_b1", "sd15_b4", "sdxl"}
    assert all(e["equal_within_atol"] for e in doc["equality"])
    assert len(list(DRY.iterdir())) <= 8  # what comes back from a device run: at most 8 files


def test_no_machine_paths_in_benchmarks():
    for f in (ROOT / "benchmarks").rglob("*"):
        if f.is_file() and f.suffix in (".py", ".sh", ".json", ".md", ".log"):
            text = f.read_text(errors="replace")
            assert "/work/" not in text, f
            if "results" in f.parts:  # measured results: no temporary folders of the machine either
                assert "/tmp/" not in text, f


def test_search_sample_options_are_run_settings(tmp_path):
    """The sample's options must be RunSettings fields (a rename there broke the dry run's search part once)."""
    import argparse

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import search_sample
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    from cachesearch.search import resolve_settings

    ns = argparse.Namespace(model="embedded", device="cpu", latency="analytic", timeout=5.0, steps=4,
                            scheduler=None, n_train=2, n_heldout=2, trials=3)
    settings = resolve_settings("sample", search_sample.explicit_options(ns), out=str(tmp_path))
    assert settings.num_steps == 4 and settings.trials == 3


def test_committed_dry_run_ran_every_part_without_errors():
    doc = json.loads((DRY / "summary.json").read_text())
    assert not doc.get("errors"), doc.get("errors")
