"""Latency measurement of a callable (one pipeline call, one denoising loop, ...).

On CUDA each repeat is bracketed by two CUDA events recorded on the current stream of the device, and the
host synchronizes once per repeat, after the call, before reading the events; nothing is synchronized
inside the measured function. Only work queued on that stream (or ordered with it) is timed: a function
that launches work on side streams must join them to the current stream before returning. On CPU each
repeat is timed with ``time.perf_counter``.

Latency on a shared machine is noisy; :func:`remeasure_if_noisy` measures again when the interquartile
range is large relative to the median and keeps the tighter measurement. The device description and the
timing method are stored with every measurement so that results from different machines are never mixed
silently.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from cachesearch._util import device_description

__all__ = [
    "LatencyStats",
    "TimingMethod",
    "device_description",
    "measure_latency",
    "peak_memory",
    "remeasure_if_noisy",
]


class TimingMethod(str, enum.Enum):
    """How the samples of a :class:`LatencyStats` were taken."""

    CUDA_EVENTS = "cuda-events"
    PERF_COUNTER = "perf_counter"


@dataclass(frozen=True)
class LatencyStats:
    """Summary of repeated latency samples, in milliseconds.

    Build it with :meth:`from_samples`; the constructor checks that the summary matches the samples.
    Percentiles use linear interpolation (``numpy.percentile`` default).
    """

    median_ms: float
    min_ms: float
    max_ms: float
    p25_ms: float
    p75_ms: float
    samples_ms: tuple[float, ...]
    device: str
    method: str

    def __post_init__(self) -> None:
        if not isinstance(self.samples_ms, tuple) or not self.samples_ms:
            raise ValueError("samples_ms must be a non-empty tuple of floats")
        if any(not isinstance(s, float) or not math.isfinite(s) or s < 0 for s in self.samples_ms):
            raise ValueError(f"samples_ms must be finite non-negative floats, got {self.samples_ms}")
        if self.method not in {m.value for m in TimingMethod}:
            raise ValueError(f"method must be one of {[m.value for m in TimingMethod]}, got {self.method!r}")
        if not isinstance(self.device, str) or not self.device:
            raise ValueError("device must be a non-empty description string")
        expected = _summarize(self.samples_ms)
        actual = (self.median_ms, self.min_ms, self.max_ms, self.p25_ms, self.p75_ms)
        if any(not math.isclose(a, e, rel_tol=1e-9, abs_tol=1e-12) for a, e in zip(actual, expected, strict=True)):
            raise ValueError(f"summary {actual} does not match samples_ms (expected {expected})")

    @classmethod
    def from_samples(
        cls, samples_ms: tuple[float, ...] | list[float], *, device: str, method: TimingMethod | str
    ) -> LatencyStats:
        """Summarize raw samples (milliseconds)."""
        samples = tuple(float(s) for s in samples_ms)
        if not samples:
            raise ValueError("need at least one sample")
        median, lo, hi, p25, p75 = _summarize(samples)
        return cls(
            median_ms=median,
            min_ms=lo,
            max_ms=hi,
            p25_ms=p25,
            p75_ms=p75,
            samples_ms=samples,
            device=device,
            method=TimingMethod(method).value,
        )

    @property
    def repeats(self) -> int:
        """Number of timed calls."""
        return len(self.samples_ms)

    @property
    def iqr_ms(self) -> float:
        """Interquartile range, p75 - p25."""
        return self.p75_ms - self.p25_ms

    @property
    def relative_spread(self) -> float:
        """IQR / median (0 when all samples are equal; inf for a zero median with non-zero spread)."""
        if self.median_ms == 0:
            return 0.0 if self.iqr_ms == 0 else math.inf
        return self.iqr_ms / self.median_ms

    def to_dict(self) -> dict[str, Any]:
        """Plain-value dict for results and YAML (adds ``iqr_ms``, ``relative_spread`` and ``repeats``)."""
        d = asdict(self)
        d["samples_ms"] = list(self.samples_ms)
        d["iqr_ms"] = self.iqr_ms
        d["relative_spread"] = self.relative_spread
        d["repeats"] = self.repeats
        return d


def _summarize(samples: tuple[float, ...]) -> tuple[float, float, float, float, float]:
    arr = np.asarray(samples, dtype=np.float64)
    p25, median, p75 = (float(v) for v in np.percentile(arr, [25.0, 50.0, 75.0]))
    return median, float(arr.min()), float(arr.max()), p25, p75


def _check_count(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _resolve_device(device: torch.device | str) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {dev} requested but CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device type {dev.type!r}; expected 'cpu' or 'cuda'")
    return dev


def measure_latency(
    fn: Callable[[], object],
    *,
    warmup: int = 1,
    repeats: int = 5,
    device: torch.device | str = "cpu",
) -> LatencyStats:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times timed; return the summary.

    Args:
        fn: The work to time, called with no arguments; its return value is discarded.
        warmup: Untimed calls first (compilation, allocator and cuDNN autotuning warm-up).
        repeats: Timed calls (>= 1).
        device: ``"cpu"`` (``time.perf_counter``) or a CUDA device (CUDA events, one synchronize per repeat).

    Raises:
        TypeError, ValueError: bad arguments. RuntimeError: CUDA requested but unavailable.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    _check_count("warmup", warmup, 0)
    _check_count("repeats", repeats, 1)
    dev = _resolve_device(device)
    samples: list[float] = []
    if dev.type == "cuda":
        with torch.cuda.device(dev):
            for _ in range(warmup):
                fn()
            torch.cuda.synchronize(dev)
            for _ in range(repeats):
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize(dev)
                samples.append(float(start.elapsed_time(end)))
        method = TimingMethod.CUDA_EVENTS
    else:
        for _ in range(warmup):
            fn()
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e3)
        method = TimingMethod.PERF_COUNTER
    return LatencyStats.from_samples(samples, device=device_description(dev), method=method)


def remeasure_if_noisy(
    fn: Callable[[], object],
    *,
    warmup: int = 1,
    repeats: int = 5,
    device: torch.device | str = "cpu",
    max_relative_spread: float = 0.1,
    max_remeasures: int = 2,
    first: LatencyStats | None = None,
) -> LatencyStats:
    """Measure ``fn``; while IQR/median exceeds ``max_relative_spread``, measure again (at most
    ``max_remeasures`` more times) and return the measurement with the smallest relative spread.

    Args:
        fn: As in :func:`measure_latency`.
        warmup: As in :func:`measure_latency`.
        repeats: As in :func:`measure_latency`.
        device: As in :func:`measure_latency`.
        max_relative_spread: Threshold on :attr:`LatencyStats.relative_spread` (> 0).
        max_remeasures: Upper bound on extra measurements (>= 0).
        first: An existing measurement of ``fn`` to start from instead of measuring once more.

    The result may still exceed the threshold when every attempt was noisy; callers can check
    ``result.relative_spread``.
    """
    valid = isinstance(max_relative_spread, (int, float)) and not isinstance(max_relative_spread, bool)
    if not (valid and math.isfinite(max_relative_spread) and max_relative_spread > 0):
        raise ValueError(f"max_relative_spread must be a positive number, got {max_relative_spread!r}")
    _check_count("max_remeasures", max_remeasures, 0)
    if first is not None and not isinstance(first, LatencyStats):
        raise TypeError(f"first must be a LatencyStats, got {type(first).__name__}")
    best = first if first is not None else measure_latency(fn, warmup=warmup, repeats=repeats, device=device)
    for _ in range(max_remeasures):
        if best.relative_spread <= max_relative_spread:
            break
        again = measure_latency(fn, warmup=warmup, repeats=repeats, device=device)
        if again.relative_spread < best.relative_spread:
            best = again
    return best


def peak_memory(fn: Callable[[], object], *, device: torch.device | str = "cpu") -> int | None:
    """Peak CUDA memory allocated by tensors (bytes) while ``fn`` runs once.

    Resets the device's peak statistics, calls ``fn``, synchronizes and reads
    ``torch.cuda.max_memory_allocated`` (which includes memory already allocated before the call). On a CPU
    device it returns None without calling ``fn``: there is no comparable allocator statistic.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    dev = _resolve_device(device)
    if dev.type != "cuda":
        return None
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    with torch.cuda.device(dev):
        fn()
    torch.cuda.synchronize(dev)
    return int(torch.cuda.max_memory_allocated(dev))
