"""Test-wide settings: one intra-op thread (tiny models gain nothing from more, and on a shared 2-core
machine OpenMP spin-waiting makes two threads up to 15x slower), no hub access, and a reference cache of the
session's own (removed at the end) instead of the user's ~/.cache/cachesearch."""

import os
import shutil
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
_CACHE = tempfile.mkdtemp(prefix="cs-test-cache-")
os.environ.setdefault("CACHESEARCH_CACHE_DIR", _CACHE)

import torch  # noqa: E402

torch.set_num_threads(1)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_CACHE, ignore_errors=True)
