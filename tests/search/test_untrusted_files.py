"""Search-space, prompt and index files are untrusted input too: the schedule reader's bounds apply."""

from __future__ import annotations

import time

import pytest

from cachesearch.evaluate import PromptFileError, load_prompt_file
from cachesearch.search.export import load_export
from cachesearch.search.space import SpaceError, load_space

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nformat: *b\n"


def test_space_file_alias_bomb_and_depth_are_refused_fast(tmp_path):
    f = tmp_path / "space.yaml"
    f.write_text(BOMB)
    t0 = time.perf_counter()
    with pytest.raises(SpaceError, match=r"space\.yaml: line 1: anchors \(&a\) are not allowed"):
        load_space(f)
    f.write_text("format: " + "[" * 3000 + "]" * 3000 + "\n")
    with pytest.raises(SpaceError, match="nested more than 32 levels deep"):
        load_space(f)
    assert time.perf_counter() - t0 < 10.0  # loose: CI machines stall for a second; an expanded bomb takes minutes


def test_prompt_file_aliases_are_refused(tmp_path):
    f = tmp_path / "prompts.yaml"
    f.write_text("train: &t [a red circle]\nheldout: *t\n")
    with pytest.raises(PromptFileError, match="anchors"):
        load_prompt_file(f, split="train", n=1)


def test_index_aliases_are_refused(tmp_path):
    (tmp_path / "schedules").mkdir()
    (tmp_path / "schedules" / "index.yaml").write_text(BOMB)
    with pytest.raises(Exception, match="anchors"):
        load_export(tmp_path)
