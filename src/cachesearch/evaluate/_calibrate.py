"""MagCache's calibration, run by diffusers' own hook: its per-step magnitude ratios on a prompt set.

``MagCacheConfig(calibrate=True)`` computes every step and, at the end of each sampling loop, reports the ratios
``mean(|r_t| / |r_{t-1}|)`` of the stack's residual norms (it prints them and logs them at INFO). Here the hook runs
through a runtime schedule on the evaluator's pipeline, one image per call (as the search evaluates MagCache), the
logged ratios are collected and averaged over the loops.
"""

from __future__ import annotations

import ast
import contextlib
import io
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._evaluator import Evaluator

__all__ = ["MagCacheCalibration", "magcache_ratios"]

_LOGGER = "diffusers.hooks.mag_cache"
_PREFIX = "MagCache Calibration Results:"


@dataclass(frozen=True)
class MagCacheCalibration:
    """MagCache's ratios (one per step, averaged over ``loops`` sampling loops) and the seconds it took."""

    ratios: tuple[float, ...]
    loops: int
    seconds: float


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.runs: list[list[float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(_PREFIX):
            self.runs.append([float(x) for x in ast.literal_eval(message[len(_PREFIX):].strip())])


def magcache_ratios(ev: Evaluator, split: str = "train") -> MagCacheCalibration:
    """Run diffusers' MagCache calibration on ``split``'s prompts at the evaluator's steps (full compute).

    Raises:
        RuntimeError: the hook reported no ratios, or not one per step.
    """
    from diffusers.hooks import MagCacheConfig

    from cachesearch.schedule import DiffusersCache

    steps = ev.num_inference_steps
    schedule = ev.compile(DiffusersCache(MagCacheConfig(calibrate=True, num_inference_steps=steps)),
                          name="magcache-calibration")
    collect = _Collect()
    logger = logging.getLogger(_LOGGER)
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False  # collected here, not printed: diffusers' handler would show every hook and ratio
    logger.addHandler(collect)
    t0 = time.perf_counter()
    try:
        with schedule.applied(ev.pipe), contextlib.redirect_stdout(io.StringIO()):  # it also prints them
            ev.fixtures.generate(split, {"num_inference_steps": steps}, "magcache calibration", batch_size=1)
    finally:
        logger.removeHandler(collect)
        logger.setLevel(level)
        logger.propagate = propagate
    runs = collect.runs
    if not runs or any(len(r) != steps for r in runs):
        raise RuntimeError(f"MagCache's calibration reported {[len(r) for r in runs]} ratios per loop; expected "
                           f"{steps} per loop")
    ratios = tuple(sum(col) / len(col) for col in zip(*runs))
    return MagCacheCalibration(ratios=ratios, loops=len(runs), seconds=time.perf_counter() - t0)
