"""Prompt sets: built-in train/held-out splits are disjoint in prompts and seeds; prompt files parse strictly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cachesearch.embedded.shapes import parse_caption
from cachesearch.evaluate import PromptFileError, PromptSet, builtin_prompts, load_prompt_file


@pytest.mark.parametrize("source", ["embedded:shapes", "arch:sd15"])
def test_builtin_splits_are_disjoint_in_prompts_and_seeds(source: str) -> None:
    train = builtin_prompts(source, "train", 20)
    heldout = builtin_prompts(source, "heldout", 20)
    assert len(train) == len(heldout) == 20
    assert not set(train.prompts) & set(heldout.prompts)
    assert not set(train.seeds) & set(heldout.seeds)
    assert len(set(train.prompts)) == 20  # no repeats inside a split
    assert train.digest() != heldout.digest()


def test_embedded_prompts_are_procedural_captions_and_prefix_stable() -> None:
    small = builtin_prompts("embedded:shapes", "train", 4)
    large = builtin_prompts("embedded", "train", 12)
    for p in large.prompts:
        parse_caption(p)  # raises if not a valid caption
    assert large.prompts[:4] == small.prompts and large.seeds[:4] == small.seeds
    # Disjoint for every size combination: the whole train half never meets the whole held-out half.
    assert not set(builtin_prompts("embedded", "train", 180).prompts) & set(
        builtin_prompts("embedded", "heldout", 180).prompts
    )
    with pytest.raises(ValueError, match="n: .*180 distinct prompts"):
        builtin_prompts("embedded", "train", 181)


def test_builtin_prompts_are_deterministic_across_calls() -> None:
    assert builtin_prompts("embedded", "heldout", 6) == builtin_prompts("embedded", "heldout", 6)
    assert builtin_prompts("embedded", "heldout", 6).digest() == builtin_prompts("embedded", "heldout", 6).digest()


def test_prompt_set_validation_and_digest() -> None:
    a = PromptSet(name="a", prompts=("x", "y"), seeds=(1, 2))
    assert a.digest().startswith("sha256:") and len(a.digest()) == 7 + 64
    assert PromptSet(name="other-name", prompts=("x", "y"), seeds=(1, 2)).digest() == a.digest()
    assert PromptSet(name="a", prompts=("x", "y"), seeds=(1, 3)).digest() != a.digest()
    with pytest.raises(ValueError, match="2 prompts but 1 seeds"):
        PromptSet(name="a", prompts=("x", "y"), seeds=(1,))
    with pytest.raises(ValueError, match=r"seeds\[0\]"):
        PromptSet(name="a", prompts=("x",), seeds=(-1,))
    with pytest.raises(ValueError, match=r"prompts\[1\]"):
        PromptSet(name="a", prompts=("x", " "), seeds=(1, 2))
    with pytest.raises(ValueError, match="split"):
        builtin_prompts("embedded", "test", 2)


def test_text_prompt_file_alternates_splits(tmp_path: Path) -> None:
    f = tmp_path / "prompts.txt"
    f.write_text("# my prompts\na cat\n\na dog\na bird\na fish\na horse\n", encoding="utf-8")
    train = load_prompt_file(f, split="train")
    heldout = load_prompt_file(f, split="heldout")
    assert train.prompts == ("a cat", "a bird", "a horse")
    assert heldout.prompts == ("a dog", "a fish")
    assert not set(train.seeds) & set(heldout.seeds)
    assert load_prompt_file(f, split="train", n=2).prompts == ("a cat", "a bird")
    with pytest.raises(PromptFileError, match="has 2 prompts but 3 images"):
        load_prompt_file(f, split="heldout", n=3)


def test_yaml_prompt_file_with_explicit_splits_and_seeds(tmp_path: Path) -> None:
    f = tmp_path / "prompts.yaml"
    f.write_text(
        "train:\n  - a cat\n  - {prompt: a dog, seed: 7}\nheldout:\n  - a bird\n",
        encoding="utf-8",
    )
    train = load_prompt_file(f, split="train")
    assert train.prompts == ("a cat", "a dog")
    assert train.seeds[1] == 7
    assert load_prompt_file(f, split="heldout").prompts == ("a bird",)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("train: [a cat]\nheldout: [a cat]\n", "different prompts"),
        ("train: [{prompt: a, seed: 1}]\nheldout: [{prompt: b, seed: 1}]\n", "share seeds"),
        ("train: [a]\n", "missing \\['heldout'\\]"),
        ("train: [a]\nheldout: [b]\ntest: [c]\n", "unknown \\['test'\\]"),
        ("train: [{prompt: a, sed: 1}]\nheldout: [b]\n", "got keys"),
        ("train: []\nheldout: [b]\n", "non-empty list"),
        ("[only one]\n", "at least 2 prompts"),
        ("train: [a\n", "not valid YAML"),
    ],
)
def test_bad_yaml_prompt_files_name_the_problem(tmp_path: Path, text: str, match: str) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(PromptFileError, match=match):
        load_prompt_file(f)


def test_missing_prompt_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="prompt file not found"):
        load_prompt_file(tmp_path / "nope.txt")


def test_package_import_is_lazy_and_never_loads_search_libraries() -> None:
    code = (
        "import sys, cachesearch.evaluate as e\n"
        "assert 'cachesearch.evaluate._quality' not in sys.modules, 'eager import'\n"
        "assert 'cachesearch.evaluate._evaluator' not in sys.modules, 'eager import'\n"
        "missing = [n for n in e.__all__ if getattr(e, n, None) is None]\n"
        "assert not missing, missing\n"
        "bad = [m for m in ('optuna', 'ray') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
