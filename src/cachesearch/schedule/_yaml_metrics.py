"""The ``metrics`` section of a schedule file: quality, latency and (format @4) the per-image loss distributions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._errors import ScheduleError, short_repr
from ._fields import _int, _mapping, _num, _str
from ._metrics import LOSS_STATS, LatencyMetrics, LossStats, Metrics, QualityMetrics, TailMetrics

__all__ = ["dump_metrics", "parse_metrics", "parse_stats", "stats_dict"]

_STATS_KEYS = {"n", *LOSS_STATS, "over", "threshold"}


def parse_stats(path: str, d: Any) -> LossStats | None:
    """Validate one split's statistics (``None`` stays ``None``); errors name ``path``."""
    if d is None:
        return None
    m = _mapping(path, d, _STATS_KEYS, {"ci95"})
    ci = m.get("ci95")
    if ci is not None:
        if not isinstance(ci, list) or len(ci) != 2:
            raise ScheduleError(f"{path}.ci95: expected [low, high], got {short_repr(ci)}")
        ci = (_num(f"{path}.ci95[0]", ci[0], nullable=False), _num(f"{path}.ci95[1]", ci[1], nullable=False))
    values = {k: _num(f"{path}.{k}", m[k], nullable=False, lo=0.0) for k in (*LOSS_STATS, "over", "threshold")}
    try:
        return LossStats(n=_int(f"{path}.n", m["n"], lo=1), ci95=ci, **values)
    except ScheduleError as e:
        raise ScheduleError(f"{path}.{e}") from None


def _parse_tail(d: Any) -> TailMetrics | None:
    if d is None:
        return None
    t = _mapping("metrics.tail", d, set(), {"train", "heldout"})
    return TailMetrics(train=parse_stats("metrics.tail.train", t.get("train")),
                       heldout=parse_stats("metrics.tail.heldout", t.get("heldout")))


def parse_metrics(d: Any, *, tail: bool) -> Metrics | None:
    """Validate a ``metrics`` mapping (``tail``: the format knows ``metrics.tail`` and
    ``metrics.latency.cost_ratio_heldout``, @4 and later)."""
    if d is None:
        return None
    if not tail and isinstance(d, dict) and "tail" in d:
        raise ScheduleError("metrics.tail: per-image loss statistics need format: cachesearch/schedule@4")
    m = _mapping("metrics", d, set(), {"quality", "latency", "tail"} if tail else {"quality", "latency"})
    quality = latency = None
    if m.get("quality") is not None:
        q = _mapping(
            "metrics.quality", m["quality"], {"metric", "train"},
            {"heldout", "n_images", "psnr", "ssim", "accuracy"},
        )
        quality = QualityMetrics(
            metric=_str("metrics.quality.metric", q["metric"]),
            train=_num("metrics.quality.train", q["train"], nullable=False),
            heldout=_num("metrics.quality.heldout", q.get("heldout")),
            n_images=_int("metrics.quality.n_images", q.get("n_images", 0), lo=0),
            psnr=_num("metrics.quality.psnr", q.get("psnr")),
            ssim=_num("metrics.quality.ssim", q.get("ssim")),
            accuracy=_num("metrics.quality.accuracy", q.get("accuracy"), lo=0.0),
        )
    if m.get("latency") is not None:
        lat = _mapping(
            "metrics.latency", m["latency"], set(), {"device", "ms", "baseline_ms", "speedup", "cost_ratio"}
            | ({"cost_ratio_heldout"} if tail else set())
        )
        latency = LatencyMetrics(
            device=_str("metrics.latency.device", lat.get("device"), nullable=True),
            ms=_num("metrics.latency.ms", lat.get("ms"), lo=0.0),
            baseline_ms=_num("metrics.latency.baseline_ms", lat.get("baseline_ms"), lo=0.0),
            speedup=_num("metrics.latency.speedup", lat.get("speedup"), lo=0.0),
            cost_ratio=_num("metrics.latency.cost_ratio", lat.get("cost_ratio"), lo=0.0),
            cost_ratio_heldout=_num("metrics.latency.cost_ratio_heldout", lat.get("cost_ratio_heldout"), lo=0.0),
        )
    return Metrics(quality=quality, latency=latency, tail=_parse_tail(m.get("tail")))


def stats_dict(s: LossStats) -> dict[str, Any]:
    """The file form of :class:`LossStats` (schedule files and front indexes)."""
    out: dict[str, Any] = {"n": s.n, **{k: s.get(k) for k in LOSS_STATS}, "over": s.over, "threshold": s.threshold}
    if s.ci95 is not None:
        out["ci95"] = list(s.ci95)
    return out


def dump_metrics(metrics: Metrics, flow: Callable[[dict[str, Any]], str]) -> list[str]:
    """The lines of a ``metrics`` section (``flow`` writes a one-line mapping)."""
    lines = ["metrics:"]
    if metrics.quality is not None:
        lines.append("  quality: " + flow({k: v for k, v in metrics.quality.__dict__.items() if v is not None}))
    if metrics.tail is not None:
        lines.append("  tail:")
        for split in ("train", "heldout"):
            stats = getattr(metrics.tail, split)
            if stats is not None:
                lines.append(f"    {split}: ".ljust(13) + flow(stats_dict(stats)))
    if metrics.latency is not None:
        lines.append("  latency: " + flow({k: v for k, v in metrics.latency.__dict__.items() if v is not None}))
    return lines
