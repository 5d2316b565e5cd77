"""Latency measurement: timing of a known sleep, repeat counts, consistent statistics, re-measuring."""

from __future__ import annotations

import dataclasses
import json
import math
import time

import pytest
import torch

from cachesearch.evaluate._latency import (
    LatencyStats,
    TimingMethod,
    device_description,
    measure_latency,
    peak_memory,
    remeasure_if_noisy,
)

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class Counter:
    def __init__(self, sleep_s: float = 0.0) -> None:
        self.calls = 0
        self.sleep_s = sleep_s

    def __call__(self) -> None:
        self.calls += 1
        if self.sleep_s:
            time.sleep(self.sleep_s)


def test_sleep_of_10ms_measures_about_10ms() -> None:
    stats = measure_latency(lambda: time.sleep(0.010), warmup=1, repeats=5)
    # time.sleep never returns early; the upper bound leaves room for a busy shared machine.
    assert 9.9 <= stats.median_ms <= 20.0, stats
    assert stats.method == TimingMethod.PERF_COUNTER.value == "perf_counter"
    assert stats.device.startswith("cpu: ")


def test_warmup_and_repeats_are_honoured() -> None:
    fn = Counter()
    stats = measure_latency(fn, warmup=2, repeats=7)
    assert fn.calls == 9
    assert stats.repeats == len(stats.samples_ms) == 7
    fn = Counter()
    assert measure_latency(fn, warmup=0, repeats=1).repeats == 1 and fn.calls == 1


def test_stats_fields_are_consistent() -> None:
    stats = measure_latency(Counter(0.001), repeats=6)
    assert stats.min_ms <= stats.p25_ms <= stats.median_ms <= stats.p75_ms <= stats.max_ms
    assert stats.min_ms == min(stats.samples_ms) and stats.max_ms == max(stats.samples_ms)
    assert stats.iqr_ms == pytest.approx(stats.p75_ms - stats.p25_ms) and stats.iqr_ms >= 0
    assert stats.relative_spread == pytest.approx(stats.iqr_ms / stats.median_ms)
    d = stats.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["samples_ms"] == list(stats.samples_ms) and d["repeats"] == 6 and d["method"] == "perf_counter"
    assert set(d) >= {
        "median_ms",
        "min_ms",
        "max_ms",
        "p25_ms",
        "p75_ms",
        "iqr_ms",
        "relative_spread",
        "device",
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.median_ms = 0.0  # type: ignore[misc]


def test_from_samples_known_values() -> None:
    stats = LatencyStats.from_samples([5.0, 1.0, 3.0, 2.0, 4.0], device="cpu: test", method="perf_counter")
    assert (stats.median_ms, stats.min_ms, stats.max_ms, stats.p25_ms, stats.p75_ms) == (
        3.0,
        1.0,
        5.0,
        2.0,
        4.0,
    )
    assert stats.iqr_ms == 2.0 and stats.relative_spread == pytest.approx(2 / 3)
    assert stats.samples_ms == (5.0, 1.0, 3.0, 2.0, 4.0)
    same = LatencyStats.from_samples([0.0, 0.0], device="cpu: test", method=TimingMethod.CUDA_EVENTS)
    assert same.relative_spread == 0.0 and same.method == "cuda-events"


def test_inconsistent_or_invalid_stats_are_rejected() -> None:
    good = LatencyStats.from_samples([1.0, 2.0, 3.0], device="cpu: test", method="perf_counter")
    with pytest.raises(ValueError, match="does not match"):
        dataclasses.replace(good, median_ms=2.5)
    with pytest.raises(ValueError, match="at least one"):
        LatencyStats.from_samples([], device="cpu: test", method="perf_counter")
    with pytest.raises(ValueError, match="finite"):
        LatencyStats.from_samples([1.0, math.nan], device="cpu: test", method="perf_counter")
    with pytest.raises(ValueError):
        LatencyStats.from_samples([1.0], device="cpu: test", method="wallclock")


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(Counter(), repeats=0)
    with pytest.raises(ValueError, match="warmup"):
        measure_latency(Counter(), warmup=-1)
    with pytest.raises(TypeError, match="repeats"):
        measure_latency(Counter(), repeats=True)
    with pytest.raises(TypeError, match="callable"):
        measure_latency(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unsupported device"):
        measure_latency(Counter(), device="meta")
    with pytest.raises(ValueError, match="max_relative_spread"):
        remeasure_if_noisy(Counter(), max_relative_spread=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_requested_without_cuda_raises() -> None:
    fn = Counter()
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        measure_latency(fn, device="cuda")
    assert fn.calls == 0


def test_remeasure_keeps_a_tight_measurement_without_calling() -> None:
    tight = LatencyStats.from_samples([10.0, 10.1, 10.0, 10.2, 10.1], device="cpu: test", method="perf_counter")
    fn = Counter()
    assert remeasure_if_noisy(fn, first=tight, max_relative_spread=0.1) is tight
    assert fn.calls == 0


def test_remeasure_replaces_a_noisy_measurement() -> None:
    noisy = LatencyStats.from_samples([1.0, 30.0, 1.0, 30.0, 2.0], device="cpu: test", method="perf_counter")
    assert noisy.relative_spread > 1
    fn = Counter(0.005)
    best = remeasure_if_noisy(fn, warmup=1, repeats=5, first=noisy, max_relative_spread=0.2, max_remeasures=3)
    assert best is not noisy and best.relative_spread < noisy.relative_spread
    attempts, rest = divmod(fn.calls, 1 + 5)
    assert rest == 0 and 1 <= attempts <= 3


def test_remeasure_is_bounded() -> None:
    noisy = LatencyStats.from_samples([1.0, 30.0, 1.0, 30.0], device="cpu: test", method="perf_counter")
    fn = Counter()
    assert remeasure_if_noisy(fn, first=noisy, max_remeasures=0) is noisy
    assert fn.calls == 0
    fn = Counter()
    remeasure_if_noisy(fn, warmup=0, repeats=2, max_relative_spread=1e-12, max_remeasures=2)
    assert fn.calls <= 2 * 3  # first measurement + at most two more


def test_cpu_description_and_peak_memory() -> None:
    desc = device_description("cpu")
    assert desc.startswith("cpu: ") and f"({torch.get_num_threads()} threads)" in desc
    fn = Counter()
    assert peak_memory(fn, device="cpu") is None
    assert fn.calls == 0


@requires_cuda
def test_cuda_events_and_peak_memory() -> None:
    x = torch.randn(1024, 1024, device="cuda")
    stats = measure_latency(lambda: x @ x, warmup=2, repeats=5, device="cuda")
    assert stats.method == "cuda-events" and stats.device == f"cuda: {torch.cuda.get_device_name()}"
    assert stats.repeats == 5 and stats.min_ms > 0
    peak = peak_memory(lambda: torch.empty(64 << 20, dtype=torch.uint8, device="cuda"), device="cuda")
    assert peak is not None and peak >= 64 << 20
