"""What the README and the documentation show is true: the files they name exist, the format version they call
current is the current one, the two commands are the ones CI runs, and the production snippet runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cachesearch.schedule._ir import FORMAT, FORMATS

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "training" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
COMMITTED_SCHEDULES = {p.stem for p in (ROOT / "artifacts" / "examples").glob("*/schedules/*.yaml")}


def _text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_committed_file_a_page_names_exists(page):
    # artifacts/runs/ is what a run writes (not committed); paths with placeholders are not names
    paths = re.findall(r"(?<![\w/.-])((?:artifacts|src/cachesearch)/[\w./-]+\.(?:yaml|md|png|json))", _text(page))
    missing = [p for p in paths if not p.startswith("artifacts/runs/") and not (ROOT / p).exists()]
    assert not missing, f"{page.name} names files that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_schedule_file_name_a_page_shows_is_a_committed_one(page):
    # a run's files are t<trial>-<policy>.yaml: a name shown as an example must be one a reader can open
    names = {m.removesuffix(".yaml") for m in re.findall(r"(?<![\w.-])t\d{4}-[\w.-]*\w", _text(page))}
    if page == ROOT / "README.md":
        assert names  # the README shows at least one, so this test checks something
    missing = sorted(n for n in names if n not in COMMITTED_SCHEDULES)
    assert not missing, f"{page.name} shows schedule files that no committed example has: {missing}"


def test_the_readme_calls_the_current_format_current():
    readme = _text(ROOT / "README.md")
    current = re.findall(r"The schedule file format is `(cachesearch/schedule@\d+)`", readme)
    assert current == [FORMAT], current
    assert FORMAT in _text(ROOT / "docs" / "schedule-format.md").splitlines()[0]


def test_validate_help_names_every_format_version_it_reads():
    res = subprocess.run([sys.executable, "-m", "cachesearch.cli", "validate", "--help"], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "COLUMNS": "400"})
    assert res.returncode == 0, res.stderr
    text = " ".join(res.stdout.split())
    versions = ", ".join(f"@{f.rsplit('@', 1)[1]}" for f in FORMATS)
    assert f"cachesearch/schedule {versions}" in text, text


def test_the_readme_commands_are_the_ones_ci_runs():
    readme = _text(ROOT / "README.md")
    ci = _text(ROOT / ".ci" / "run")
    test_line = 'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]" && python -m pytest'
    assert test_line in readme
    for step in ("python3 -m venv .venv", ". .venv/bin/activate", 'pip install -e ".[dev]"', "python -m pytest"):
        assert step in ci, step
    assert 'pip install -e ".[search]" && cachesearch run' in readme
    assert "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu" in readme


def test_the_readme_production_snippet_runs(monkeypatch):
    readme = _text(ROOT / "README.md")
    section = readme.split("## Use a schedule in production", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 10
    monkeypatch.chdir(ROOT)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the README's own snippet
    image, sched, pipe = scope["image"], scope["sched"], scope["pipe"]
    assert image.size == (32, 32)
    assert sched.sampler.num_inference_steps < 20  # a cached schedule was picked and applied
    assert getattr(pipe.unet, "_cachesearch_applied", None) is None  # removed on leaving the with block


def test_the_readme_is_a_front_door_whose_links_resolve():
    readme = _text(ROOT / "README.md")
    assert len(readme.splitlines()) <= 250  # the rest belongs in docs/
    links = [link.split("#")[0] for link in re.findall(r"\]\(([^)\s]+)\)", readme) if "://" not in link]
    assert links and not [link for link in links if not (ROOT / link).exists()]
