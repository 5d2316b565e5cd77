"""Test-wide settings: one intra-op thread (tiny models gain nothing from more, and on a shared 2-core
machine OpenMP spin-waiting makes two threads up to 15x slower) and no hub access."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
