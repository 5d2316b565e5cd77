"""Lock files are removed when released, safely (issue 31 item 14: stale ``.lock`` files stayed in run folders
and in the reference cache): a process that waited on a file the holder removed takes the new one, so mutual
exclusion holds while files come and go."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
import torch

from cachesearch._atomic import LockHeld, lock_file
from cachesearch.evaluate._reference import ReferenceCache
from cachesearch.search.settings import SearchError
from cachesearch.search.study import run_lock


def test_a_released_lock_leaves_no_file_and_a_held_one_names_its_holder(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    with lock_file(path, note="pid 1 on here"):
        assert path.read_text() == "pid 1 on here"
        with pytest.raises(LockHeld) as e, lock_file(path, wait=False):
            pass
        assert e.value.holder == "pid 1 on here"
    assert not path.exists()
    with lock_file(path, wait=False):
        pass
    assert list(tmp_path.iterdir()) == []


def _bump(path: str, counter: str, times: int) -> None:
    for _ in range(times):
        with lock_file(path):
            c = Path(counter)
            c.write_text(str(int(c.read_text()) + 1))


def test_mutual_exclusion_holds_while_lock_files_come_and_go(tmp_path: Path) -> None:
    counter = tmp_path / "n"
    counter.write_text("0")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_bump, args=(str(tmp_path / "c.lock"), str(counter), 200)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert counter.read_text() == "800"  # no increment lost: never two holders at once
    assert not (tmp_path / "c.lock").exists()


def test_run_lock_and_the_reference_cache_leave_no_lock_file(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with run_lock(run):
        assert (run / ".lock").is_file()
        with pytest.raises(SearchError, match=r"is already being searched by pid \d+ on "), run_lock(run):
            pass
    assert list(run.iterdir()) == []
    cache = ReferenceCache(tmp_path / "cache")
    images, info = cache.get_or_build({"model": "x", "n": 1}, lambda: torch.zeros(1, 3, 4, 4))
    assert not info.hit and not list((tmp_path / "cache").rglob("*.lock"))
