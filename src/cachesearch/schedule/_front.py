"""A run's exported Pareto front (``schedules/index.yaml``) and picking one schedule from it by budget.

Production path (pyyaml only): ``cs.load_front(path).pick(max_cost=0.4)`` returns a :class:`Schedule`.
Index files are untrusted input like schedule files: bounded, no aliases, and the schedule files they name must
be plain relative names inside the index's folder.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ._errors import ScheduleError, short_repr
from ._ir import Schedule
from ._metrics import LossStats
from ._yaml import load_schedule, read_yaml_file
from ._yaml_metrics import parse_stats

__all__ = ["INDEX_FORMAT", "PICK_STATS", "Front", "FrontEntry", "load_front"]

INDEX_FORMAT = "cachesearch/index@1"
_MAX_INDEX_BYTES = 16 << 20
_SPLITS = ("train", "heldout")
PICK_STATS = ("mean", "p90", "max")
"""Statistics of the per-image losses a pick can bound and rank by."""


@dataclass(frozen=True, kw_only=True)
class FrontEntry:
    """One schedule of the front, as the index lists it."""

    file: str
    name: str
    loss_train: float | None
    loss_heldout: float | None
    cost_ratio: float | None
    speedup: float | None
    latency_ms: float | None
    stats_train: LossStats | None = None
    stats_heldout: LossStats | None = None
    """Distributions of the per-image losses (indexes written since format @4; ``None`` in older ones)."""

    def stats(self, split: str) -> LossStats | None:
        """The per-image loss distribution on ``split``, if the index records one."""
        return self.stats_train if split == "train" else self.stats_heldout

    def loss(self, split: str, stat: str = "mean") -> float | None:
        """The quality loss on ``split`` (``"train"`` or ``"heldout"``): the mean over its images, or another
        statistic of them (``"p90"``, ``"max"``; ``None`` when the index records no distribution)."""
        if stat == "mean":
            return self.loss_train if split == "train" else self.loss_heldout
        stats = self.stats(split)
        return None if stats is None else stats.get(stat)

    def describe(self, split: str) -> str:
        """One line: file, loss, cost, speedup and latency (and the tail when the index has it)."""
        st = self.stats(split)
        loss = f"loss {_fmt(self.loss(split))}"
        if st is not None:
            interval = f" [{_fmt(st.ci95[0])}, {_fmt(st.ci95[1])}]" if st.ci95 is not None else ""
            loss = (f"loss mean {_fmt(st.mean)}{interval}, p90 {_fmt(st.p90)}, max {_fmt(st.max)}, "
                    f"{st.over:.0%} over {st.threshold:g} on {st.n} images")
        parts = [f"{loss} ({split})", f"cost {_fmt(self.cost_ratio)}"]
        if self.speedup is not None:
            parts.append(f"measured speedup {self.speedup:.2f}x")
        if self.latency_ms is not None:
            parts.append(f"{self.latency_ms:.1f} ms")
        return f"{self.file} ({', '.join(parts)})"


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


@dataclass(frozen=True)
class Front:
    """The exported front of one run: its entries, their metric, and the folder the schedule files are in."""

    path: Path
    metric: str | None
    entries: tuple[FrontEntry, ...]

    def pick(self, **bounds: Any) -> Schedule:
        """Load the schedule :meth:`choose` picks: the lowest loss within a cost/latency/speedup budget (and
        ``max_loss`` if given), or, with only ``max_loss``, the cheapest schedule within that loss bound.
        ``stat="p90"`` or ``"max"`` bounds and ranks that statistic of the per-image losses instead of their mean
        (``front.pick(max_cost=0.5, stat="p90")``: the schedule whose worst tenth of images is best).

        Raises:
            ScheduleError: no bound given, a bound the front has no data for, or nothing fits — the message
                names the closest option.
        """
        return load_schedule(self.path.parent / self.choose(**bounds).file)

    def choose(
        self,
        *,
        max_cost: float | None = None,
        max_latency_ms: float | None = None,
        min_speedup: float | None = None,
        max_loss: float | None = None,
        split: str = "heldout",
        stat: str = "mean",
    ) -> FrontEntry:
        """The front entry that fits best (see :meth:`pick`); ``split`` chooses whose loss counts and ``stat``
        which statistic of its per-image losses (``"mean"``, ``"p90"``, ``"max"``) is bounded by ``max_loss`` and
        ranked."""
        if split not in _SPLITS:
            raise ScheduleError(f"split: expected 'train' or 'heldout', got {short_repr(split)}")
        if stat not in PICK_STATS:
            raise ScheduleError(f"stat: expected one of {list(PICK_STATS)}, got {short_repr(stat)}")
        budget = {"max_cost": max_cost, "max_latency_ms": max_latency_ms, "min_speedup": min_speedup}
        given = {k: v for k, v in budget.items() if v is not None}
        if not given and max_loss is None:
            raise ScheduleError(
                "pick: give a budget (max_cost, max_latency_ms, min_speedup) or a loss bound (max_loss)"
            )
        for key, value in {**given, "max_loss": max_loss}.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value < 0):
                raise ScheduleError(f"{key}: expected a non-negative number, got {short_repr(value)}")
        attr = {"max_cost": "cost_ratio", "max_latency_ms": "latency_ms", "min_speedup": "speedup"}
        for key in given:
            if all(getattr(e, attr[key]) is None for e in self.entries):
                raise ScheduleError(f"{key}: this front records no {attr[key]} (was the run's latency measured?)")
        scored = [e for e in self.entries if e.loss(split, stat) is not None]
        if not scored:
            if stat != "mean" and any(e.loss(split) is not None for e in self.entries):
                raise ScheduleError(
                    f"stat: this front records no {split} {stat} (its index predates per-image statistics); "
                    f"re-export the run (cachesearch export --name RUN) or pick by stat='mean'"
                )
            raise ScheduleError(f"split: no schedule of this front has a {split} loss")

        def loss(e: FrontEntry) -> float:
            return e.loss(split, stat)  # type: ignore[return-value]

        what = f"{split} loss" if stat == "mean" else f"{split} {stat} loss"

        def in_budget(e: FrontEntry) -> bool:
            ok = True
            if max_cost is not None:
                ok &= e.cost_ratio is not None and e.cost_ratio <= max_cost
            if max_latency_ms is not None:
                ok &= e.latency_ms is not None and e.latency_ms <= max_latency_ms
            if min_speedup is not None:
                ok &= e.speedup is not None and e.speedup >= min_speedup
            return bool(ok)

        def cost(e: FrontEntry) -> float:
            if max_latency_ms is not None and e.latency_ms is not None:
                return e.latency_ms
            return e.cost_ratio if e.cost_ratio is not None else math.inf

        if given:
            fits = [e for e in scored if in_budget(e)]
            if not fits:
                closest = min(scored, key=cost)
                raise ScheduleError(
                    f"pick: no schedule of {self.path} fits {_bounds(given)}; the cheapest is {closest.describe(split)}"
                )
            best = [e for e in fits if max_loss is None or loss(e) <= max_loss]
            if not best:
                closest = min(fits, key=loss)
                raise ScheduleError(
                    f"pick: no schedule within {_bounds(given)} has {what} <= {max_loss}; the best there is "
                    f"{closest.describe(split)}"
                )
            return min(best, key=lambda e: (loss(e), cost(e)))
        fits = [e for e in scored if loss(e) <= max_loss]
        if not fits:
            closest = min(scored, key=loss)
            raise ScheduleError(
                f"pick: no schedule of {self.path} has {what} <= {max_loss}; the best is "
                f"{closest.describe(split)}"
            )
        return min(fits, key=lambda e: (cost(e), loss(e)))


def _bounds(given: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in given.items())


def _num(path: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScheduleError(f"{path}: expected a number or null, got {short_repr(value)}")
    return float(value) if math.isfinite(value) else None


def _file_name(path: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ScheduleError(f"{path}: expected a file name, got {short_repr(value)}")
    p = PurePosixPath(value)
    if p.is_absolute() or ".." in p.parts or "\\" in value or os.path.isabs(value) or len(p.parts) != 1:
        raise ScheduleError(f"{path}: {short_repr(value)} must be a plain file name in the index's folder")
    return value


def load_front(path: str | os.PathLike[str]) -> Front:
    """Read a run's ``schedules/index.yaml`` (written by ``cachesearch run`` / ``export``)."""
    p = Path(path)
    if p.is_dir():
        p = p / "index.yaml"
    data = read_yaml_file(p, what="front index", max_bytes=_MAX_INDEX_BYTES)
    if not isinstance(data, Mapping) or data.get("format") != INDEX_FORMAT:
        got = data.get("format") if isinstance(data, Mapping) else type(data).__name__
        raise ScheduleError(f"{p}: format: expected {INDEX_FORMAT!r}, got {short_repr(got)}")
    rows = data.get("schedules")
    if not isinstance(rows, list):
        raise ScheduleError(f"{p}: schedules: expected a list of exported schedules")
    entries = []
    for i, row in enumerate(rows):
        where = f"{p}: schedules[{i}]"
        if not isinstance(row, Mapping):
            raise ScheduleError(f"{where}: expected a mapping")
        q = row.get("quality") or {}
        if not isinstance(q, Mapping):
            raise ScheduleError(f"{where}.quality: expected a mapping")
        name = row.get("name")
        tail = row.get("tail") or {}
        if not isinstance(tail, Mapping):
            raise ScheduleError(f"{where}.tail: expected a mapping with train/heldout statistics")
        entries.append(FrontEntry(
            file=_file_name(f"{where}.file", row.get("file")),
            name=name if isinstance(name, str) else str(row.get("file")),
            loss_train=_num(f"{where}.quality.train", q.get("train")),
            loss_heldout=_num(f"{where}.quality.heldout", q.get("heldout")),
            cost_ratio=_num(f"{where}.cost_ratio", row.get("cost_ratio")),
            speedup=_num(f"{where}.speedup", row.get("speedup")),
            latency_ms=_num(f"{where}.latency_ms", row.get("latency_ms")),
            stats_train=parse_stats(f"{where}.tail.train", tail.get("train")),
            stats_heldout=parse_stats(f"{where}.tail.heldout", tail.get("heldout")),
        ))
    metric = data.get("metric")
    return Front(path=p, metric=metric if isinstance(metric, str) else None, entries=tuple(entries))
