"""Fixtures for unit tests of the search logic.

``FakeEvaluator`` is a real :class:`~cachesearch.evaluate.Evaluator` over the tiny random-weight pipeline
(real block space, MACs, compile, cost ratio, references and profile), whose ``evaluate`` scores a schedule
from its masks instead of generating images: fast and deterministic, and it can be told to fail. It is for
unit tests of the study logic only; the end-to-end tests in ``tests/commands`` use the real evaluator on the
embedded model.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from cachesearch.evaluate import EvalConfig, EvalResult, Evaluator
from cachesearch.models._loaders import LoadedModel
from cachesearch.schedule import Schedule
from cachesearch.search import RunSettings
from tests._tiny import tiny_sd_pipeline
from tests.postgres import pg_server  # noqa: F401 - a PostgreSQL server for the session (test_postgres.py)

TINY_STEPS = 8


class FakeEvaluator(Evaluator):
    """Scores = analytic cost ratio and a synthetic quality loss that grows with reuse and with fewer steps.

    ``fail_when(schedule) -> str | None`` makes a candidate fail: ``"raise"``, ``"invalid"`` or ``"nan"``.
    ``calls`` counts evaluations per split.
    """

    def __init__(self, config: EvalConfig, model: LoadedModel) -> None:
        super().__init__(config, model=model)
        self.calls: dict[str, int] = {"train": 0, "heldout": 0}
        self.evaluated: list[str] = []
        self.ranges: list[tuple[str, slice | None]] = []
        self.fail_when: Callable[[Schedule], str | None] = lambda s: None
        self.before_evaluate: Callable[[Schedule], None] = lambda s: None
        self.image_noise = 0.0  # > 0: each image's loss is scaled by a factor in [1 - noise, 1 + noise] of its own

    def evaluate(self, schedule: Schedule, *, split: str = "train", measure: bool | None = None,
                 images: slice | None = None) -> EvalResult:
        self.calls[split] += 1
        self.ranges.append((split, images))
        self.evaluated.append(schedule.name)
        self.before_evaluate(schedule)
        cost = self.cost_ratio(schedule)
        mode = self.fail_when(schedule)
        if mode == "raise":
            raise RuntimeError("CUDA out of memory (simulated)")
        reuse = sum(m.count(".") for m in schedule.masks().values()) / max(1, sum(map(len, schedule.masks().values())))
        if schedule.runtime is not None:  # a library's cache: a synthetic count from its configs
            key = str(sorted(schedule.runtime.to_plain().items()))
            cost = 0.3 + 0.6 * int(hashlib.sha256(key.encode()).hexdigest()[:6], 16) / 16**6
            reuse = 1 - cost
        missing = 1 - schedule.num_steps / self.num_inference_steps
        jitter = int(hashlib.sha256(str(sorted(schedule.masks().items())).encode()).hexdigest()[:6], 16) / 16**6
        if schedule.runtime is not None:
            jitter = cost
        quality = 0.2 * reuse + 0.5 * missing**2 + 0.001 * jitter + (0.0005 if split == "heldout" else 0.0)
        valid = mode != "invalid"
        if mode == "nan":
            quality = math.nan
        total = len(self.prompt_set(split))
        first, stop, _ = (images or slice(None)).indices(total)
        # per-image losses that differ (image i weighs 0.5 + i / total), averaged over the range scored
        weights = [0.5 + i / total for i in range(first, stop)]
        scale = quality / (0.5 + (total - 1) / (2 * total))
        losses = None if not valid or math.isnan(quality) else tuple(
            scale * w * self._noise(schedule, split, first + i) for i, w in enumerate(weights))
        quality = scale * sum(weights) / len(weights) if not losses else sum(losses) / len(losses)
        return EvalResult(
            schedule=schedule.name, split=split, valid=valid, reason=None if valid else "2 of 2 images contain NaN",
            metric=self.metric_name, quality=quality if valid else None, psnr=30.0, ssim=0.9, accuracy=None,
            cost_ratio=cost, latency_ms=None, baseline_ms=None, speedup=None, latency_spread=None,
            n_images=stop - first, seconds=0.0, prompts=self.prompt_set(split).digest(), random_weights=True,
            images=None if (first, stop) == (0, total) else [first, stop], losses=losses,
        )


    def _noise(self, schedule: Schedule, split: str, image: int) -> float:
        if not self.image_noise:
            return 1.0
        h = hashlib.sha256(f"{sorted(schedule.masks().items())}|{split}|{image}".encode()).hexdigest()
        return max(0.0, 1.0 + self.image_noise * (2 * int(h[:6], 16) / 16**6 - 1))


@pytest.fixture(scope="session")
def tiny_model() -> LoadedModel:
    """The tiny random-weight pipeline (2 UNet stages, DDIM) as a loaded model."""
    torch.set_num_threads(1)
    pipe = tiny_sd_pipeline(seed=0, scheduler="ddim", blocks=2)
    return LoadedModel(pipe=pipe, denoiser=pipe.unet, source="tiny:ddim", random_weights=True, family="unet2d")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One reference cache for the whole session."""
    return tmp_path_factory.mktemp("cs-cache")


@pytest.fixture
def make_evaluator(tiny_model: LoadedModel, cache_dir: Path) -> Callable[..., FakeEvaluator]:
    """Build a FakeEvaluator over the tiny model."""

    def make(**overrides: Any) -> FakeEvaluator:
        cfg = dict(model="tiny", num_inference_steps=TINY_STEPS, n_train=2, n_heldout=2, height=32, width=32,
                   cache_dir=str(cache_dir))
        cfg.update(overrides)
        return FakeEvaluator(EvalConfig(**cfg), tiny_model)

    return make


@pytest.fixture
def settings(tmp_path: Path) -> Callable[..., RunSettings]:
    """RunSettings for a run in ``tmp_path`` matching the FakeEvaluator's configuration."""

    def make(name: str = "unit", **overrides: Any) -> RunSettings:
        cfg = dict(name=name, model="tiny", num_steps=TINY_STEPS, n_train=2, n_heldout=2, trials=12, timeout=None,
                   population=4, seed=0, out=str(tmp_path / "runs"), workers=1, profile_prompts=2)
        cfg.update(overrides)
        return RunSettings(**cfg)

    return make
