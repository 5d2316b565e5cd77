"""The evaluator's scores: perceptual distance, PSNR and SSIM against the reference, the embedded models'
caption accuracy, and the metrics written into a schedule file (a base class of :class:`~._evaluator.Evaluator`,
which sets the attributes used here in its constructor)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._result import EvalResult, schedule_metrics

if TYPE_CHECKING:
    import torch

    from cachesearch.schedule import Metrics

    from ._perceptual import PerceptualMetric
    from ._prompts import PromptSet

__all__ = ["EvaluatorScoring"]


class EvaluatorScoring:
    """Scoring of generated images against the reference images of the same prompts and latents."""

    metric: PerceptualMetric
    source: str
    # a method of the evaluator's fixture views
    prompt_set: Callable[[str], PromptSet]

    def _score(self, images: torch.Tensor, reference: torch.Tensor) -> dict[str, Any]:
        """Mean perceptual distance (``quality``) and each image's (``losses``), PSNR and SSIM of ``images``
        against ``reference`` (SSIM ``None`` for images smaller than its 11-px window); for videos ``[N, F, 3, H, W]``
        the same per frame averaged over frames, and the ``temporal`` error (:mod:`._video`).

        Raises:
            InvalidOutputError: the perceptual metric met NaN/inf.
        """
        from ._pixel import psnr, ssim
        from ._video import is_video, video_scores

        if is_video(images):
            return video_scores(self.metric, images, reference)
        dist = self.metric(images, reference).double()
        return {
            "quality": float(dist.mean()),
            "losses": tuple(float(v) for v in dist.reshape(-1).tolist()),
            "psnr": float(psnr(images, reference).mean()),
            "ssim": float(ssim(images, reference).mean()) if min(images.shape[-2:]) >= 11 else None,
        }

    def accuracy(self, images: torch.Tensor, split: str, which: slice | None = None) -> float | None:
        """Embedded model: fraction of images matching their caption's colors and shape; else ``None``."""
        from cachesearch.embedded import embedded_package

        package = embedded_package(self.source)
        if package is None:
            return None
        check, parse_caption = package.check, package.parse_caption

        ps = self.prompt_set(split)
        try:
            captions = [parse_caption(p) for p in ps.prompts[which or slice(None)]]
        except ValueError:
            return None  # a user prompt file with free text: no ground truth
        ok = [check(img, cap).all_ok for img, cap in zip(images, captions)]
        return sum(ok) / len(ok)

    # -- export ------------------------------------------------------------------------------------------
    def to_schedule_metrics(self, train: EvalResult, heldout: EvalResult | None = None, *,
                            threshold: float | None = None) -> Metrics:
        """Metrics for a schedule file from a train result and, optionally, a held-out result, with their
        per-image loss distributions (see :func:`~._result.schedule_metrics`)."""
        return schedule_metrics(train, heldout, threshold=threshold)
