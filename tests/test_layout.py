"""The package is importable from anywhere, including from the folder that holds a clone named ``cachesearch``.

With the old flat layout and an editable install, ``import cachesearch`` there found the clone's root folder
first and made it a namespace package without ``load_schedule``. The ``src/`` layout puts ``src`` itself on
``sys.path`` (a plain ``.pth`` entry), so the real package always wins.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cachesearch

REPO = Path(__file__).resolve().parents[1]


def test_package_lives_under_src():
    assert (REPO / "src" / "cachesearch" / "__init__.py").is_file()
    assert not (REPO / "cachesearch").exists()
    assert Path(cachesearch.__file__).name == "__init__.py"  # a regular package, not a namespace


def test_import_from_the_parent_of_a_clone_named_cachesearch(tmp_path):
    (tmp_path / "cachesearch" / "src").mkdir(parents=True)  # what `git clone …/cachesearch` leaves there
    (tmp_path / "cachesearch" / "README.md").write_text("a clone\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = "import cachesearch as cs; print(cs.load_schedule.__module__, cs.__file__)"
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[0] == "cachesearch.schedule._yaml"


def test_no_machine_paths_in_committed_data() -> None:
    """Shipped pipeline configs (diffusers writes ``_name_or_path``), artifacts, benchmark results, docs and spaces
    name no folder of the machine they were made on."""
    root = Path(__file__).resolve().parents[1]
    folders = [root / "artifacts", root / "benchmarks" / "results", root / "docs", root / "search_spaces",
               *(root / "src/cachesearch/embedded").glob("*/pipeline")]
    runs = root / "artifacts" / "runs"  # local run folders: git-ignored, never committed
    files = [f for d in folders for f in d.rglob("*")
             if f.is_file() and f.suffix in (".json", ".md", ".yaml", ".txt") and runs not in f.parents]
    assert len(files) > 20
    for f in [*files, root / "README.md"]:
        text = f.read_text(errors="replace")
        assert "/work/" not in text and "/tmp/" not in text and "/root/" not in text, f


def test_the_trainers_stay_out_of_the_wheel() -> None:
    """setuptools' package discovery (pyproject's ``[tool.setuptools.packages.find]``) finds the embedded models
    with their shipped weights, and not the repository's ``training/`` folder."""
    import pytest
    from setuptools import find_packages

    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    find = config["packages"]["find"]
    packages = [p for where in find["where"] for p in find_packages(where=str(REPO / where), include=find["include"])]
    assert {"cachesearch.embedded.shapes", "cachesearch.embedded.scenes", "cachesearch.embedded.shapes_flux"} \
        <= set(packages)
    assert not [p for p in packages if p.split(".")[0] == "training"], packages
    assert "*.safetensors" in config["package-data"]["*"]  # the shipped weights travel with their packages
    assert (REPO / "training" / "__init__.py").is_file() and (REPO / "training" / "README.md").is_file()
