"""Held-out validation with enough pairs: every exported schedule and compared baseline is scored on the first
``--n-heldout`` held-out (prompt, seed) pairs, and pairs are added where a ranking the export states cannot be
told from chance.

The rankings an export states (:func:`claims`):

- **neighbours**: along the front sorted by cost, each schedule against the next cheaper one (the front says the
  dearer one is better: otherwise why pay for it);
- **baselines**: each baseline the report compares against, against the best front schedule costing no more
  when that schedule is better on average (it claims to beat the baseline).

A ranking is *resolved* when the interval of the mean per-pair difference of the two schedules' losses on the
pairs both were scored on excludes 0 (paired BCa bootstrap, :func:`cachesearch.evaluate._stats.paired_interval`:
both schedules see the same (prompt, seed) pairs, so a prompt that is hard for one is hard for the other and
that variance cancels). An unresolved ranking whose schedules have fewer than ``--n-heldout-max`` pairs gets
more: the pairs double (16 → 32 → 64) until every ranking is resolved or its schedules reached the maximum.
Looking again after adding pairs would make "resolved" more likely by chance alone, so each look uses the level
``1 - 0.05 / looks`` (Bonferroni over the looks: 98.3 % for 16/32/64), which keeps the chance of calling a tie
ranked at any look below 5 %.

Held-out results are cached per compiled mask in ``<run>/heldout.json`` with their per-image losses; adding pairs
scores only the new ones (their references are built once per range and shared, see
:meth:`cachesearch.evaluate._fixtures.Fixtures.reference_range`) and merges them exactly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._util import atomic_write
from .masks import mask_key
from .outcome import result_attr

if TYPE_CHECKING:
    from ..evaluate import EvalResult, Evaluator
    from ..schedule import Schedule

__all__ = [
    "Claim",
    "HeldoutCache",
    "HeldoutScores",
    "Job",
    "Runner",
    "decision_level",
    "grow_until_ranked",
    "pair_sizes",
    "result_from_dict",
]


class HeldoutCache:
    """Held-out results by compiled mask, in ``<run>/heldout.json`` (rewritten atomically after each add)."""

    def __init__(self, path: Path, identity: dict[str, Any]) -> None:
        self.path = path
        self.identity = identity
        self.digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.entries: dict[str, dict[str, Any]] = {}
        if path.is_file():
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                if doc.get("identity") == self.digest:
                    self.entries = dict(doc.get("results", {}))
            except (OSError, ValueError):
                self.entries = {}

    def get(self, key: str) -> dict[str, Any] | None:
        """A cached result dict, or None."""
        return self.entries.get(key)

    def put(self, key: str, result: dict[str, Any]) -> None:
        """Store and persist a result dict."""
        self.entries[key] = result
        doc = {"identity": self.digest, "results": self.entries}
        atomic_write(self.path, json.dumps(doc, indent=1, default=str) + "\n")


def result_from_dict(d: dict[str, Any]) -> EvalResult:
    """An :class:`~cachesearch.evaluate.EvalResult` from its stored dict (unknown keys ignored)."""
    from ..evaluate import EvalResult  # loads the evaluator module

    names = {f.name for f in fields(EvalResult)}
    return EvalResult(**{k: v for k, v in d.items() if k in names})


def pair_sizes(start: int, cap: int) -> tuple[int, ...]:
    """The held-out pair counts validation looks at: ``start``, doubled until ``cap`` (``cap`` last)."""
    sizes = [max(1, start)]
    while sizes[-1] < cap:
        sizes.append(min(cap, 2 * sizes[-1]))
    return tuple(sizes)


def decision_level(looks: int, level: float = 0.95) -> float:
    """The interval level of each of ``looks`` looks so that all of them together err at most ``1 - level``."""
    return 1.0 - (1.0 - level) / max(1, looks)


Job = tuple["Schedule", int, int, bool]
"""A held-out range to score: ``(schedule, first, stop, measure latency)``."""
Runner = Callable[[Sequence[Job]], list["EvalResult"]]
"""Scores jobs, in order (in this process, or on worker processes: :func:`.executors.pool.heldout_runner`)."""


class HeldoutScores:
    """Held-out results of schedules by compiled mask, grown in image ranges on demand (cached on disk).

    ``runner`` scores a batch of ranges (default: one after the other with ``ev``); a run with several local
    workers scores them on worker processes."""

    def __init__(self, ev: Evaluator, cache: HeldoutCache, *, measure: bool = False,
                 runner: Runner | None = None) -> None:
        self.ev = ev
        self.cache = cache
        self.measure = measure
        self.total = len(ev.prompt_set("heldout"))
        self.results: dict[str, EvalResult] = {}
        self.schedules: dict[str, Schedule] = {}
        self.runner = runner or self._in_process
        self.images_scored = 0
        """Held-out images scored by this object (cache hits excluded): the validation's compute."""

    def _in_process(self, jobs: Sequence[Job]) -> list[EvalResult]:
        return [self.ev.evaluate(s, split="heldout", measure=m, images=slice(a, b)) for s, a, b, m in jobs]

    def _cached(self, key: str) -> EvalResult | None:
        res = self.results.get(key)
        if res is None and (hit := self.cache.get(key)) is not None:
            res = result_from_dict(hit)
            if res.valid and res.losses is None:  # recorded without per-image losses: score again
                return None
            self.results[key] = res
        return res

    def score_many(self, wanted: Sequence[tuple[Schedule, int]]) -> None:
        """Make :attr:`results` hold each schedule on at least its first ``n`` pairs (more if cached); the ranges
        still missing are scored in one batch by the runner."""
        from ..evaluate import EvalResult

        jobs: dict[str, Job] = {}
        for schedule, n in wanted:
            key = mask_key(schedule)
            self.schedules.setdefault(key, schedule)
            res = self._cached(key)
            n = min(n, self.total)
            if res is not None and (not res.valid or res.n_images >= n):
                continue
            have = 0 if res is None else res.n_images
            if key not in jobs or jobs[key][2] < n:
                jobs[key] = (schedule, have, n, self.measure and have == 0)
        if not jobs:
            return
        for (key, (_, first, stop, _)), part in zip(jobs.items(), self.runner(list(jobs.values())), strict=True):
            self.images_scored += stop - first
            res = self.results.get(key)
            res = part if res is None or not part.valid else EvalResult.merge([res, part], total=self.total)
            self.results[key] = res
            self.cache.put(key, result_attr(res))

    def score(self, schedule: Schedule, n: int) -> EvalResult:
        """The held-out result of ``schedule`` on at least its first ``n`` pairs (more if the cache has more);
        invalid if any range failed."""
        self.score_many([(schedule, n)])
        return self.results[mask_key(schedule)]


@dataclass(frozen=True)
class Claim:
    """A ranking the export states: ``better`` (a compiled mask key) has a lower held-out loss than ``worse``.

    ``kind``: ``"neighbour"`` (adjacent on the front) or ``"baseline"``; ``label``: how the report names it.
    After :func:`grow_until_ranked`: ``n`` common pairs, the mean per-pair difference ``better − worse`` and its
    interval at the decision level, and ``verdict``: ``"ranked"`` (interval below 0), ``"reversed"`` (above 0:
    on held-out the claim is wrong), or ``"unresolved"`` (contains 0 at the maximum pair count)."""

    kind: str
    better: str
    worse: str
    label: str
    n: int = 0
    diff: float | None = None
    interval: tuple[float, float] | None = None
    verdict: str = "unresolved"

    def to_dict(self) -> dict[str, Any]:
        """Plain form for the front index."""
        return {"kind": self.kind, "label": self.label, "pairs": self.n, "mean_difference": self.diff,
                "interval": None if self.interval is None else list(self.interval), "verdict": self.verdict}


def judge(claim: Claim, a: EvalResult, b: EvalResult, level: float) -> Claim:
    """``claim`` with its paired difference on the pairs both results share, at interval ``level``."""
    from dataclasses import replace

    from ..evaluate._stats import paired_interval

    n = min(a.n_images, b.n_images)
    if not (a.valid and b.valid) or a.losses is None or b.losses is None or n < 2:
        return replace(claim, n=n, diff=None, interval=None, verdict="unresolved")
    x, y = a.losses[:n], b.losses[:n]
    lo, hi = paired_interval(x, y, level=level)
    verdict = "ranked" if hi < 0 else "reversed" if lo > 0 else "unresolved"
    return replace(claim, n=n, diff=sum(x) / n - sum(y) / n, interval=(lo, hi), verdict=verdict)


def grow_until_ranked(
    scores: HeldoutScores,
    make_claims: Callable[[], Sequence[Claim]],
    sizes: Sequence[int],
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[Claim]:
    """Judge the claims ``make_claims()`` states on the current held-out results; while some is unresolved and
    one of its schedules has fewer than the largest of ``sizes`` pairs, score both on the next size and judge
    again (claims are rebuilt each round: which front schedule a baseline is compared with can change as its
    held-out mean sharpens). Returns the final judged claims."""
    level = decision_level(len(sizes))
    round_ = 0
    while True:  # ends: every round grows some schedule to a larger size, and sizes are finite
        round_ += 1
        judged = [judge(c, scores.results[c.better], scores.results[c.worse], level) for c in make_claims()]
        grow: dict[str, int] = {}
        for c in judged:
            if c.verdict != "unresolved":
                continue
            for key in (c.better, c.worse):
                have = scores.results[key].n_images if scores.results[key].valid else scores.total
                nxt = next((s for s in sizes if s > have), None)
                if nxt is not None:
                    grow[key] = max(grow.get(key, 0), nxt)
        if not grow:
            return judged
        if progress is not None:
            progress(f"held-out validation: more pairs for {len(grow)} schedules (round {round_ + 1})", 0, 1)
        scores.score_many([(scores.schedules[key], n) for key, n in sorted(grow.items())])
