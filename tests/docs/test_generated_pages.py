"""The generated documentation pages are current: docs/cli.md (from the ``cachesearch`` command) and
docs/benchmarks.md (from benchmarks/results/*.json), so neither the CLI reference nor a benchmark number on the
site can drift from the code and the measurements."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_docs_{name}", ROOT / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_cli_page_is_generated_from_the_current_commands():
    gen = _script("gen_cli")
    text = gen.render()
    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == text, \
        "docs/cli.md is stale: run `python docs/gen_cli.py`"
    import typer

    from cachesearch.cli import app

    for name in typer.main.get_command(app).commands:
        assert f"## `cachesearch {name}`" in text


def test_the_benchmarks_page_is_generated_from_the_committed_results():
    gen = _script("gen_benchmarks")
    assert (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8") == gen.render(), \
        "docs/benchmarks.md is stale: run `python docs/gen_benchmarks.py`"


def test_every_result_file_is_on_the_benchmarks_page():
    gen = _script("gen_benchmarks")
    used = {name for _, names in gen.SECTIONS for name in names}
    results = ROOT / "benchmarks" / "results"
    # the GPU suite's folder is one section (its summary.md is generated from its JSON files)
    files = {str(p.relative_to(results)) for p in results.glob("*.json")} | {"gpu_suite_dryrun_cpu/summary.json"}
    assert files == used, f"result files on no section of docs/gen_benchmarks.py: {sorted(files - used)}"
