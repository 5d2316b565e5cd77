"""Enough held-out validation: rankings the export states are judged on paired differences, and pairs are added
(doubling up to --n-heldout-max) exactly where a ranking is not resolved."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import yaml

from cachesearch.evaluate import EvalResult
from cachesearch.schedule import load_schedule
from cachesearch.search import run_search
from cachesearch.search.run import export_run
from cachesearch.search.validation import Claim, decision_level, grow_until_ranked, judge, pair_sizes

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _res(losses: list[float]) -> EvalResult:
    return EvalResult(schedule="s", split="heldout", valid=True, reason=None, metric="m",
                      quality=float(np.mean(losses)), psnr=None, ssim=None, accuracy=None, cost_ratio=0.5,
                      latency_ms=None, baseline_ms=None, speedup=None, latency_spread=None, n_images=len(losses),
                      seconds=0.0, losses=losses)


def test_sizes_double_to_the_cap_and_each_look_is_stricter() -> None:
    assert pair_sizes(16, 64) == (16, 32, 64) and pair_sizes(16, 50) == (16, 32, 50) and pair_sizes(8, 8) == (8,)
    assert decision_level(3) == pytest.approx(1 - 0.05 / 3) and decision_level(1) == 0.95


class _Scores:
    """A stand-in for HeldoutScores: per key a fixed list of 64 losses, of which the first n are 'scored'."""

    def __init__(self, pools: dict[str, np.ndarray], n: int) -> None:
        self.pools, self.total, self.calls = pools, 64, []
        self.schedules = {k: k for k in pools}
        self.results = {k: _res(list(v[:n])) for k, v in pools.items()}

    def score_many(self, wanted: list[tuple[str, int]]) -> None:
        for key, n in wanted:
            self.calls.append((key, n))
            self.results[key] = _res(list(self.pools[key][:n]))


def test_only_unresolved_rankings_get_more_pairs() -> None:
    rng = np.random.default_rng(0)
    base = rng.lognormal(-5, 1.5, 64)
    pools = {"a": base, "b": base * 3.0,  # clearly different: ranked on 16 pairs
             "c": base * rng.uniform(0.9, 1.1, 64), "d": base * rng.uniform(0.9, 1.1, 64)}  # a tie: never ranked
    scores = _Scores(pools, 16)
    claims = [Claim(kind="neighbour", better="a", worse="b", label="a vs b"),
              Claim(kind="baseline", better="c", worse="d", label="c vs d")]
    judged = grow_until_ranked(scores, lambda: claims, (16, 32, 64))
    assert [(c.verdict, c.n) for c in judged] == [("ranked", 16), ("unresolved", 64)]
    assert sorted(scores.calls) == [("c", 32), ("c", 64), ("d", 32), ("d", 64)]
    lo, hi = judged[1].interval
    assert lo < 0 < hi and judged[0].interval[1] < 0 and judged[0].diff == pytest.approx(np.mean(base[:16] * -2))


def test_a_reversed_claim_is_called_so() -> None:
    base = np.random.default_rng(1).lognormal(-5, 1, 16)
    c = judge(Claim(kind="baseline", better="x", worse="y", label=""), _res(list(base * 2)), _res(list(base)), 0.95)
    assert c.verdict == "reversed" and c.interval[0] > 0
    short = judge(c, _res(list(base)), _res(list(base[:1])), 0.95)
    assert short.verdict == "unresolved" and short.n == 1  # one pair says nothing


def test_a_run_adds_pairs_where_rankings_are_open_and_caches_them(settings, make_evaluator) -> None:
    s = settings(trials=14, n_heldout=2, heldout_max=8)
    ev = make_evaluator(n_heldout=8)
    ev.image_noise = 0.9  # images disagree: some neighbours cannot be ranked on 2 pairs
    summary = run_search(s, evaluator=ev)
    export = summary.export
    index = yaml.safe_load(export.index_path.read_text())
    assert index["validation"]["pairs"] == [2, 4, 8]
    claims = index["validation"]["claims"]
    assert {c["kind"] for c in claims} <= {"neighbour", "baseline"} and claims
    n = {e.file: e.stats("heldout").n for e in export.entries}
    assert set(n.values()) <= {2, 4, 8} and max(n.values()) > 2  # some schedules needed more pairs
    for c in claims:
        if c["verdict"] == "unresolved":
            assert c["pairs"] == 8  # open rankings end at the maximum
        else:
            assert (c["interval"][1] < 0) == (c["verdict"] == "ranked")
    for e in export.entries:  # the files carry the same distribution, its interval and the pair count
        held = load_schedule(export.schedules_dir / e.file).metrics.tail.heldout
        assert held == e.stats("heldout") and held.ci95 is not None
    report = (s.run_dir / "report.md").read_text()
    assert "## Held-out validation" in report and "pairs" in report
    calls = ev.calls["heldout"]
    again, _ = export_run(s.name, s.out, evaluator=ev)
    assert ev.calls["heldout"] == calls and [e.stats("heldout") for e in again.entries] == [
        e.stats("heldout") for e in export.entries]
