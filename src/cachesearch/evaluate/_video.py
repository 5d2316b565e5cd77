"""Scores of videos against their references: per-frame image scores averaged over frames, and a temporal term.

A video is ``[F, 3, H, W]`` in [0, 1] (a batch ``[N, F, 3, H, W]``: what video pipelines return for
``output_type="pt"``). For each video:

* **quality** — the perceptual distance (the evaluator's metric: LPIPS / ST-LPIPS) of every frame to the reference
  frame, averaged over the frames. It is the search objective and the per-video loss of the tail statistics.
* **PSNR / SSIM** — per frame, averaged over the frames and videos (as for images, a frame identical to its
  reference has infinite PSNR, and so has the mean).
* **temporal** — the error of the motion: the root-mean-square difference between the candidate's frame-to-frame
  changes ``x[f+1] - x[f]`` and the reference's, over all pixels and consecutive frame pairs. It is 0 when the
  candidate moves exactly as the reference does (also when it is off by the same amount in every frame) and grows
  with flicker and with motion the reference does not have, which per-frame scores cannot see: a clip whose frames
  are each close to the reference but jitter between two states scores well frame by frame and badly here.

The temporal term is reported beside the others (:attr:`EvalResult.temporal`), not folded into the objective: it
is in pixel units, the objective in the metric's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["is_video", "temporal_error", "video_scores"]


def is_video(x: torch.Tensor) -> bool:
    """Whether ``x`` is a batch of videos ``[N, F, C, H, W]`` (a batch of images is ``[N, C, H, W]``)."""
    return x.ndim == 5


def _check(videos: torch.Tensor, references: torch.Tensor) -> None:
    if not is_video(videos) or videos.shape != references.shape:
        raise ValueError(f"expected two video batches [N, F, C, H, W] of one shape, got {tuple(videos.shape)} and "
                         f"{tuple(references.shape)}")


def temporal_error(videos: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Per video, the RMS difference of consecutive-frame changes (float64 CPU ``[N]``; 0 for one-frame clips)."""
    _check(videos, references)
    a = videos.detach().to("cpu", torch.float64)
    b = references.detach().to("cpu", torch.float64)
    if a.shape[1] < 2:
        return torch.zeros(a.shape[0], dtype=torch.float64)
    diff = (a[:, 1:] - a[:, :-1]) - (b[:, 1:] - b[:, :-1])
    return diff.pow(2).flatten(1).mean(dim=1).sqrt()


def _per_frame(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], videos: torch.Tensor,
               references: torch.Tensor) -> torch.Tensor:
    """``fn`` on every frame as an image batch, back as ``[N, F]``."""
    n, f = videos.shape[:2]
    flat = fn(videos.reshape(n * f, *videos.shape[2:]), references.reshape(n * f, *references.shape[2:]))
    return flat.reshape(n, f)


def video_scores(metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], videos: torch.Tensor,
                 references: torch.Tensor) -> dict[str, Any]:
    """``quality`` (mean over videos of the mean per-frame perceptual distance), ``losses`` (that per-video mean),
    ``psnr`` and ``ssim`` (per frame, averaged over frames and videos; SSIM ``None`` below 11 px) and ``temporal``
    (mean :func:`temporal_error`) of ``videos`` against ``references``.

    Raises:
        InvalidOutputError: the perceptual metric met NaN/inf (raised by ``metric``).
    """
    from ._pixel import psnr, ssim

    _check(videos, references)
    dist = _per_frame(metric, videos, references).double().mean(dim=1)
    small = min(videos.shape[-2:]) < 11
    return {
        "quality": float(dist.mean()),
        "losses": tuple(float(v) for v in dist.reshape(-1).tolist()),
        "psnr": float(_per_frame(psnr, videos, references).mean()),
        "ssim": None if small else float(_per_frame(ssim, videos, references).mean()),
        "temporal": float(temporal_error(videos, references).mean()),
    }
