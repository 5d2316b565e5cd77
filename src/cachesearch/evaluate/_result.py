"""The scores of one evaluation (:class:`EvalResult`) and their conversion into a schedule file's metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from cachesearch.schedule import LatencyMetrics, Metrics, QualityMetrics, TailMetrics

if TYPE_CHECKING:
    from cachesearch.schedule import LossStats

__all__ = ["EvalResult", "schedule_metrics"]


@dataclass(frozen=True, kw_only=True)
class EvalResult:
    """Scores of one schedule on one prompt split.

    Attributes:
        schedule: schedule name.
        split: ``"train"`` or ``"heldout"``.
        valid: ``False`` when the candidate failed; ``reason`` says why and the scores are ``None``.
        metric: name of the perceptual metric actually used (values under different names do not compare).
        quality: mean perceptual distance to the reference (lower is better; 0 = identical).
        psnr: mean PSNR in dB (``inf`` when every image equals its reference).
        ssim: mean SSIM.
        accuracy: embedded model only: fraction of images whose background color, shape color and shape
            match the prompt.
        cost_ratio: analytic denoiser MACs relative to the reference sampler's full compute (a k-of-N step
            set counts k/N); for a runtime schedule the MACs of the modules that executed, counted, averaged over
            the images (its library decides per image).
        latency_ms, baseline_ms: median latency of one pipeline call with and without the schedule, both
            measured in this process (``None`` unless latency was measured).
        speedup: ``baseline_ms / latency_ms``.
        latency_spread: interquartile range / median of the candidate's latency samples.
        n_images: images scored.
        seconds: wall time of this evaluation.
        device: description of the device latency was measured on.
        prompts: digest of the prompt set.
        random_weights: the model has random weights; quality numbers describe nothing real.
        images: ``[first, stop)`` of the split's images when only that range was scored (multi-fidelity
            screening), ``None`` for the whole split.
        losses: the perceptual distance of each scored image, in order (``quality`` is their mean); ``None``
            in results recorded before per-image losses were kept. Tail statistics (:meth:`summary`,
            :meth:`stat`) and exact merges of image ranges come from them.
        temporal: videos only: the mean error of the frame-to-frame changes against the reference's
            (:func:`~._video.temporal_error`; 0 = the same motion); ``None`` for images. For videos, ``quality``,
            ``losses``, ``psnr`` and ``ssim`` are per-frame scores averaged over each video's frames.
        macs: denoiser MACs this evaluation executed (every image, every CFG branch; ``None`` when the block
            space has no MACs).
        macs_reused: denoiser MACs of prefix steps it took from an earlier candidate's run instead
            (:mod:`._prefix`); ``macs + macs_reused`` is what an independent run executes.
    """

    schedule: str
    split: str
    valid: bool
    reason: str | None
    metric: str
    quality: float | None
    psnr: float | None
    ssim: float | None
    accuracy: float | None
    cost_ratio: float | None
    latency_ms: float | None
    baseline_ms: float | None
    speedup: float | None
    latency_spread: float | None
    n_images: int
    seconds: float
    device: str | None = None
    prompts: str | None = None
    random_weights: bool = False
    images: list[int] | None = None
    losses: tuple[float, ...] | None = None
    temporal: float | None = None
    macs: float | None = None
    macs_reused: float | None = None

    def __post_init__(self) -> None:
        if self.losses is not None:  # a JSON record gives a list
            object.__setattr__(self, "losses", tuple(float(v) for v in self.losses))
            if len(self.losses) != self.n_images:
                raise ValueError(f"EvalResult.losses: {len(self.losses)} losses for {self.n_images} images")

    def summary(self, *, threshold: float | None = None, interval: bool = False) -> LossStats | None:
        """Mean, median, p90, CVaR, max and share of images over ``threshold`` (default
        :data:`~._stats.BROKEN_THRESHOLD`) of the per-image losses, and with ``interval`` the mean's 95 % interval;
        ``None`` without per-image losses (an invalid result, or one recorded before they were kept)."""
        from ._stats import BROKEN_THRESHOLD, summarize

        if not self.valid or not self.losses:
            return None
        return summarize(self.losses, threshold=BROKEN_THRESHOLD if threshold is None else threshold,
                         interval=interval)

    def stat(self, name: str) -> float | None:
        """Statistic ``name`` (``mean``, ``median``, ``p90``, ``cvar``, ``max``) of the per-image losses; ``mean``
        is :attr:`quality` even without them."""
        from ._stats import STATS, statistic

        if name not in STATS:
            raise ValueError(f"statistic: expected one of {list(STATS)}, got {name!r}")
        if name == "mean":
            return self.quality
        return None if not self.valid or not self.losses else statistic(self.losses, name)

    @classmethod
    def merge(cls, parts: list[EvalResult], *, total: int | None = None) -> EvalResult:
        """The result of the union of consecutive image ranges of one schedule and split: scores are the
        image-weighted means (exactly the means over the union's images), per-image losses are concatenated (so
        every tail statistic of the union is exact; ``None`` if a part has none), seconds add up. ``total``: the
        split's size, so that a union covering it gets ``images=None``.

        Raises:
            ValueError: a part is invalid, or the parts are of different schedules/splits/metrics or not
                consecutive ranges.
        """
        if not parts:
            raise ValueError("merge: no results")
        first = parts[0]
        for p in parts:
            if not p.valid:
                raise ValueError(f"merge: the result on images {p.images} is invalid ({p.reason})")
            if (p.schedule, p.split, p.metric, p.prompts) != (first.schedule, first.split, first.metric, first.prompts):
                raise ValueError("merge: results of different schedules, splits, metrics or prompt sets")
        ranges = [p.images or [0, p.n_images] for p in parts]
        for (_, stop), (start, _) in zip(ranges, ranges[1:], strict=False):
            if stop != start:
                raise ValueError(f"merge: image ranges {ranges} are not consecutive")
        n = sum(p.n_images for p in parts)

        def mean(name: str) -> float | None:
            values = [getattr(p, name) for p in parts]
            if any(v is None for v in values):
                return None
            return sum(v * p.n_images for v, p in zip(values, parts, strict=True)) / n

        costs = {p.cost_ratio for p in parts}
        cost = first.cost_ratio if len(costs) == 1 else mean("cost_ratio")  # runtime schedules: per image
        union = [ranges[0][0], ranges[-1][1]]
        timed = next((p for p in parts if p.latency_ms is not None), first)
        return cls(
            schedule=first.schedule, split=first.split, valid=True, reason=None, metric=first.metric,
            quality=mean("quality"), psnr=mean("psnr"), ssim=mean("ssim"), accuracy=mean("accuracy"),
            cost_ratio=cost, latency_ms=timed.latency_ms, baseline_ms=timed.baseline_ms,
            speedup=timed.speedup, latency_spread=timed.latency_spread, n_images=n,
            seconds=sum(p.seconds for p in parts), device=timed.device, prompts=first.prompts,
            random_weights=first.random_weights, images=None if union == [0, total] else union,
            losses=None if any(p.losses is None for p in parts) else tuple(v for p in parts for v in p.losses),
            temporal=mean("temporal"),
            macs=_sum(p.macs for p in parts), macs_reused=_sum(p.macs_reused for p in parts),
        )

    def to_dict(self, *, json_safe: bool = False) -> dict[str, Any]:
        """Plain-value dict. ``psnr`` may be ``inf``; with ``json_safe`` non-finite floats become the strings
        ``"inf"``/``"-inf"``/``"nan"`` so that strict JSON readers accept the output.

        (Not :func:`cachesearch._util.json_safe`, which writes ``None``: an evaluation record keeps "identical
        to the reference" (``psnr`` = ``"inf"``) apart from "not scored".)
        """
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if out["losses"] is not None:
            out["losses"] = list(out["losses"])
        if json_safe:
            out = {k: repr(v) if isinstance(v, float) and not math.isfinite(v) else v for k, v in out.items()}
        return out

    @classmethod
    def invalid(cls, reason: str, *, seconds: float, **common: Any) -> EvalResult:
        """A failed evaluation: every score ``None``; ``common`` holds the identifying fields (``schedule``,
        ``split``, ``metric``, ``n_images``, …, optionally ``cost_ratio``)."""
        common.setdefault("cost_ratio", None)
        return cls(
            valid=False,
            reason=reason,
            quality=None,
            psnr=None,
            ssim=None,
            accuracy=None,
            latency_ms=None,
            baseline_ms=None,
            speedup=None,
            latency_spread=None,
            seconds=seconds,
            **common,
        )


def _sum(values: Any) -> float | None:
    values = list(values)
    return None if any(v is None for v in values) else float(sum(values))


def schedule_metrics(train: EvalResult, heldout: EvalResult | None = None, *,
                     threshold: float | None = None) -> Metrics:
    """Metrics for a schedule file from a train result and, optionally, a held-out result; with per-image losses
    also their distributions (``metrics.tail``, format @4: images over ``threshold`` counted, default
    :data:`~._stats.BROKEN_THRESHOLD`; the held-out mean with its 95 % interval).

    Raises:
        ValueError: a result is invalid, or the two were scored with different metrics.
    """
    if not train.valid or train.quality is None:
        raise ValueError(f"to_schedule_metrics: the train result of {train.schedule!r} is invalid ({train.reason})")
    if heldout is not None and (not heldout.valid or heldout.quality is None):
        raise ValueError(
            f"to_schedule_metrics: the held-out result of {heldout.schedule!r} is invalid ({heldout.reason})"
        )
    if heldout is not None and heldout.metric != train.metric:
        raise ValueError(f"to_schedule_metrics: train used {train.metric}, held-out {heldout.metric}")
    quality = QualityMetrics(
        metric=train.metric,
        train=train.quality,
        heldout=None if heldout is None else heldout.quality,
        n_images=train.n_images + (0 if heldout is None else heldout.n_images),
        psnr=train.psnr,
        ssim=train.ssim,
        accuracy=train.accuracy,
    )
    timed = train if train.latency_ms is not None else heldout
    latency = LatencyMetrics(
        device=timed.device if timed is not None and timed.latency_ms is not None else None,
        ms=None if timed is None else timed.latency_ms,
        baseline_ms=None if timed is None else timed.baseline_ms,
        speedup=None if timed is None else timed.speedup,
        cost_ratio=train.cost_ratio,
        cost_ratio_heldout=heldout.cost_ratio if heldout is not None and heldout.cost_ratio != train.cost_ratio
        else None,  # a runtime cache's count differs by image (format @4)
    )
    train_tail = train.summary(threshold=threshold)
    heldout_tail = None if heldout is None else heldout.summary(threshold=threshold, interval=True)
    tail = None if train_tail is None and heldout_tail is None else TailMetrics(train=train_tail, heldout=heldout_tail)
    return Metrics(quality=quality, latency=latency, tail=tail)
