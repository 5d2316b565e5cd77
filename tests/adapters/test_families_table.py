"""docs/families.md is the table the code generates (``python -m tests.adapters.families``), and it accounts for
every transformer class diffusers exports: covered (a tiny configuration the coverage tests run) or left out with
a reason."""

from __future__ import annotations

from tests.adapters._zoo import TINY
from tests.adapters.families import LEFT_OUT, ORACLES, TABLE, exported, render


def test_every_exported_transformer_class_is_covered_or_left_out_with_a_reason():
    names = set(exported())
    assert not set(TINY) & set(LEFT_OUT)
    assert names == set(TINY) | set(LEFT_OUT), sorted(names ^ (set(TINY) | set(LEFT_OUT)))
    assert all(LEFT_OUT.values()) and set(ORACLES) <= set(TINY)


def test_the_committed_table_is_the_generated_one():
    assert TABLE.read_text(encoding="utf-8") == render(), (
        "docs/families.md is stale: regenerate it with `python -m tests.adapters.families`")
