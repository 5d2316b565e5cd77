"""The trainers write pipeline folders, checkpoints (with optimizer state) and encoded training sets: tens of MB per
test. pytest keeps the temporary folders of its last three sessions, so a passing test's folder is removed here
right after it (a failing one's stays, to look at)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    report = yield
    if report.when == "call":
        item.stash[_PASSED] = report.passed
    return report


_PASSED = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
def _remove_tmp_path_after_a_pass(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    tmp = request.node.funcargs.get("tmp_path")
    if tmp is not None and request.node.stash.get(_PASSED, False):
        shutil.rmtree(Path(tmp), ignore_errors=True)
