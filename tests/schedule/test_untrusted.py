"""Schedule, search-space and index files are untrusted input: every hostile file is one ScheduleError, fast."""

from __future__ import annotations

import time

import pytest

import cachesearch as cs
from cachesearch.schedule._yaml import MAX_DEPTH, MAX_FILE_BYTES, read_yaml_file, strict_yaml_load


def _alias_bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 9)}]")
    lines.append(f"name: *a{levels - 1}")
    return "\n".join(lines) + "\n"


def _refused_fast(path, match: str) -> cs.ScheduleError:
    t0 = time.perf_counter()
    with pytest.raises(cs.ScheduleError, match=match) as info:
        cs.load_schedule(path)
    assert time.perf_counter() - t0 < 10.0  # generous: the machine may be loaded; a parse bomb takes minutes
    assert len(str(info.value)) < 400  # the message never formats an expanded or huge value
    return info.value


def test_alias_bomb_is_refused_before_expansion(tmp_path):
    bomb = _alias_bomb()
    assert len(bomb) < 700  # the 600-byte file of the issue: 9 levels of nine-fold anchors
    f = tmp_path / "bomb.yaml"
    f.write_text(bomb)
    _refused_fast(f, r"bomb\.yaml: line 1: anchors \(&a0\) are not allowed")


def test_a_lone_alias_or_merge_key_is_refused(tmp_path):
    f = tmp_path / "alias.yaml"
    f.write_text("base: &b {x: 1}\nother:\n  <<: *b\n")
    _refused_fast(f, "anchors")
    with pytest.raises(Exception, match=r"aliases \(\*x\) are not allowed"):
        strict_yaml_load("a: *x\n")


def test_deep_nesting_is_refused_without_recursion_error(tmp_path):
    f = tmp_path / "deep.yaml"
    f.write_text("name: " + "[" * 5000 + "]" * 5000 + "\n")
    _refused_fast(f, f"nested more than {MAX_DEPTH} levels deep")
    ok = "v: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n"  # the mapping is level 1
    assert strict_yaml_load(ok)["v"] is not None


def test_oversized_file_is_refused_before_reading(tmp_path):
    f = tmp_path / "big.yaml"
    f.write_text("name: " + "x" * (MAX_FILE_BYTES + 10) + "\n")
    _refused_fast(f, rf"big\.yaml: \d+ bytes, more than the {MAX_FILE_BYTES} a schedule file may have")


def test_long_values_are_cut_in_messages(tmp_path):
    golden = next((p for p in sorted((__import__("pathlib").Path(__file__).parent / "golden").glob("*.yaml"))), None)
    assert golden is not None
    text = golden.read_text().replace("reuse: output", "reuse: " + "z" * 50_000)
    f = tmp_path / "long.yaml"
    f.write_text(text)
    err = _refused_fast(f, r"reuse: expected one of \['output', 'residual'\], got 'zzz")
    assert "50000 characters" in str(err)


@pytest.mark.parametrize(
    ("text", "match"),
    [("a: 1\na: 2\n", "appears twice"), ("a: [1, 2\n", "not valid YAML"), ("\xff\xfe", "not a UTF-8")],
)
def test_read_yaml_file_errors_are_one_line_schedule_errors(tmp_path, text, match):
    f = tmp_path / "x.yaml"
    f.write_bytes(text.encode("latin-1") if "\xff" in text else text.encode())
    with pytest.raises(cs.ScheduleError, match=match) as info:
        read_yaml_file(f, what="search space")
    assert "\n" not in str(info.value)
