"""Block-change profiler (Block Caching's analysis, arXiv 2312.03209, Sec. 3).

For every block and sampler step ``s >= 1`` it measures the relative L1 change of the block's output
between consecutive steps, ``||o_s - o_{s-1}||_1 / ||o_{s-1}||_1``, per image (CFG branches count as
separate rows of the batch) and averages it over a prompt set. Step 0 is 0 by convention. For schedulers
that call the denoiser more than once per step the first call of each step is used. A block's output is the
hidden-state element its registered I/O contract names (:func:`cachesearch.adapters.block_io_of`).

The profile feeds :class:`cachesearch.BlockCachingAuto`, and :func:`save_profile` writes it as JSON plus a
heatmap PNG (blocks × steps).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cachesearch.schedule import BlockKind, BlockProfile, ScheduleError

from .._util import atomic_write, save_figure

if TYPE_CHECKING:
    from ._evaluator import Evaluator

__all__ = ["PROFILE_FORMAT", "load_profile", "profile_blocks", "profile_id", "profile_images", "save_profile"]

PROFILE_FORMAT = "cachesearch/profile@1"
_EPS = 1e-12


def profile_blocks(
    evaluator: Evaluator, *, split: str = "train", granularity: str = "stage", n: int | None = None,
    statistic: str = "mean",
) -> BlockProfile:
    """Profile the relative output change of each block between consecutive steps, averaged over a split.

    Args:
        evaluator: supplies the pipeline, sampler (steps, guidance, size), prompts and initial latents.
        split: prompt split to average over.
        granularity: ``"stage"`` (``down_blocks.i``, ``mid_block``, ``up_blocks.i``; a DiT's
            ``transformer_blocks.i``, also called ``"block"``), ``"layer"`` (every resnet / attention / sampler)
            or ``"component"`` (``attn1``/``attn2``/``ff`` inside the attention layers' transformer blocks; a DiT
            block's ``attn``/``ff``/...).
        n: the first ``n`` prompts of the split's pool (default: the split's own; more than the split holds
            are drawn from the same pool, as a larger split would be, up to the pool's size).
        statistic: how each (block, step) is summarised over the images: ``"mean"`` or ``"p90"`` (the change
            that 90 % of the images stay under: a static schedule placed by it serves the fast-changing images
            too).

    Returns:
        A :class:`BlockProfile` with one row per block (execution order) and one column per step.
    """
    if statistic not in ("mean", "p90"):
        raise ValueError(f"statistic: expected 'mean' or 'p90', got {statistic!r}")
    blocks, means, per_image = _profile(evaluator, split=split, granularity=granularity, n=n)
    if statistic == "p90":
        means = torch.quantile(per_image, 0.9, dim=0) if per_image.shape[0] else means
    return BlockProfile(blocks=tuple(blocks), changes=tuple(tuple(float(v) for v in row) for row in means.tolist()))


def profile_images(
    evaluator: Evaluator, *, split: str = "train", granularity: str = "stage", n: int | None = None
) -> tuple[tuple[str, ...], torch.Tensor]:
    """Each image's relative output change per block and step: ``(blocks, changes [images, blocks, steps])``
    (float64; a CFG batch's two rows of one image averaged). :func:`profile_blocks` summarises it over images."""
    blocks, _, per_image = _profile(evaluator, split=split, granularity=granularity, n=n)
    return tuple(blocks), per_image


def _profile(
    evaluator: Evaluator, *, split: str, granularity: str, n: int | None
) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """``(blocks, mean changes [blocks, steps], per-image changes [images, blocks, steps])``."""
    from cachesearch.adapters import block_io_of
    from cachesearch.runtime import steps_of_calls

    try:
        kind = BlockKind("stage" if granularity == "block" else granularity)  # a DiT's blocks are its stages
    except ValueError:
        raise ValueError(
            f"granularity: expected 'stage' (or 'block'), 'layer' or 'component', got {granularity!r}"
        ) from None
    evaluator.check_no_schedule()
    blocks = evaluator.space.names(kind)
    modules = [evaluator.denoiser.get_submodule(b) for b in blocks]
    outputs = [block_io_of(m, path=b) for b, m in zip(blocks, modules)]  # which output is the hidden state
    num_steps = evaluator.num_inference_steps
    kwargs = {"num_inference_steps": num_steps}
    _, calls = evaluator.num_calls(kwargs)
    step_of_call = steps_of_calls(evaluator.pipe.scheduler, num_steps, calls)
    first_call = {}
    for c, s in enumerate(step_of_call):
        first_call.setdefault(s, c)
    measured_call = {c: s for s, c in first_call.items()}

    sums = torch.zeros(len(blocks), num_steps, dtype=torch.float64)
    counts = torch.zeros(len(blocks), num_steps, dtype=torch.float64)
    state: dict[str, Any] = {"call": -1, "prev": [None] * len(blocks), "rows": None}
    batches: list[torch.Tensor] = []  # per batch: [rows of the batch, blocks, steps]

    def on_call(module: torch.nn.Module, args: Any) -> None:
        state["call"] += 1

    def make_hook(i: int) -> Any:
        def hook(module: torch.nn.Module, args: Any, out: Any) -> None:
            step = measured_call.get(state["call"])
            if step is None:
                return
            try:
                y = outputs[i].hidden_output(out)
            except (TypeError, IndexError) as e:
                raise ScheduleError(f"profile: block {blocks[i]!r}: {e}") from e
            y = y.detach().to(torch.float64).flatten(1)
            prev = state["prev"][i]
            if prev is not None and prev.shape == y.shape:
                rel = (y - prev).abs().sum(1) / prev.abs().sum(1).clamp_min(_EPS)
                sums[i, step] += rel.sum().cpu()
                counts[i, step] += rel.numel()
                rows = state["rows"]
                if rows is not None and rows.shape[0] == rel.numel():
                    rows[:, i, step] = rel.cpu()
            state["prev"][i] = y

        return hook

    ps = evaluator.prompt_set(split)
    if n is not None and int(n) != len(ps):
        ps = evaluator.fixtures.prompt_pool(split, int(n))
        latents = evaluator.fixtures.latents_for(ps.seeds)
    else:
        latents = evaluator.latents(split)
    total = len(ps)
    bs = evaluator.config.batch_size
    handles = [evaluator.denoiser.register_forward_pre_hook(on_call)]
    try:
        handles += [m.register_forward_hook(make_hook(i)) for i, m in enumerate(modules)]
        evaluator.report_progress("profile", 0, total)
        for lo in range(0, total, bs):
            hi = min(lo + bs, total)
            state["call"] = -1
            state["prev"] = [None] * len(blocks)
            rows = (hi - lo) * (2 if evaluator.cfg else 1)
            state["rows"] = torch.zeros(rows, len(blocks), num_steps, dtype=torch.float64)
            evaluator.generate_batch(list(ps.prompts[lo:hi]), latents[lo:hi], list(ps.seeds[lo:hi]), kwargs)
            per_row = state["rows"]
            batches.append(per_row.view(2, hi - lo, len(blocks), num_steps).mean(0) if evaluator.cfg else per_row)
            evaluator.report_progress("profile", hi, total)
    finally:
        for h in handles:
            h.remove()
    means = torch.where(counts > 0, sums / counts.clamp_min(1), torch.zeros_like(sums))
    if not bool(torch.isfinite(means).all()):
        raise RuntimeError("profile: block outputs contain NaN/inf; the model does not run correctly in this setup")
    per_image = torch.cat(batches) if batches else torch.zeros(0, len(blocks), num_steps, dtype=torch.float64)
    return list(blocks), means, per_image


def profile_id(profile: BlockProfile) -> str:
    """``"sha256:..."`` of a profile's blocks and values (stored as ``profile_id`` in Block-Caching policies)."""
    text = json.dumps({"blocks": list(profile.blocks), "changes": [list(r) for r in profile.changes]})
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def save_profile(
    profile: BlockProfile,
    out_dir: str | Path,
    *,
    metadata: Mapping[str, Any] | None = None,
    title: str | None = None,
) -> tuple[Path, Path]:
    """Write ``profile.json`` and ``profile.png`` (heatmap, blocks × steps) into ``out_dir``.

    ``metadata`` (e.g. :meth:`Evaluator.describe`) is stored under ``"meta"`` in the JSON. Returns the two
    paths.
    """
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "format": PROFILE_FORMAT,
        "id": profile_id(profile),
        "num_steps": profile.num_steps,
        "blocks": list(profile.blocks),
        "changes": [list(r) for r in profile.changes],
        "meta": dict(metadata or {}),
    }
    json_path = out / "profile.json"
    atomic_write(json_path, (json.dumps(doc, indent=1) + "\n").encode("utf-8"))
    png_path = out / "profile.png"
    _heatmap(profile, png_path, title=title)
    return json_path, png_path


def _heatmap(profile: BlockProfile, path: Path, *, title: str | None) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    data = np.asarray(profile.changes, dtype=np.float64)
    n_blocks, n_steps = data.shape
    fig_h = max(2.5, 0.28 * n_blocks + 1.2)
    fig_w = max(5.0, min(16.0, 0.22 * n_steps + 3.5))
    fig, ax = plt.subplots(figsize=(fig_w, fig_h), dpi=110)
    try:
        # step 0 is 0 by definition: leave it blank rather than let it set the colour scale
        shown = np.ma.masked_array(data, mask=np.broadcast_to(np.arange(n_steps) == 0, data.shape))
        im = ax.imshow(shown, aspect="auto", cmap="magma", interpolation="nearest")
        ax.set_yticks(range(n_blocks))
        ax.set_yticklabels(profile.blocks, fontsize=7)
        step_ticks = range(0, n_steps, max(1, n_steps // 10))
        ax.set_xticks(list(step_ticks))
        ax.set_xlabel("sampler step")
        ax.set_title(title or "relative L1 change of block output vs previous step", fontsize=9)
        fig.colorbar(im, ax=ax, label="||o_s - o_(s-1)||_1 / ||o_(s-1)||_1")
        fig.tight_layout()
        save_figure(fig, path)
    finally:
        plt.close(fig)


def load_profile(path: str | Path) -> BlockProfile:
    """Read a profile written by :func:`save_profile` (the JSON file or the folder holding it)."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "profile.json"
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"profile not found: {p} (write one with `cachesearch profile`)") from None
    except ValueError as e:
        raise ScheduleError(f"{p}: not a JSON profile ({e})") from e
    if not isinstance(doc, dict) or doc.get("format") != PROFILE_FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ScheduleError(f"{p}: format: expected {PROFILE_FORMAT!r}, got {got!r}")
    blocks, changes = doc.get("blocks"), doc.get("changes")
    if not isinstance(blocks, list) or not all(isinstance(b, str) for b in blocks):
        raise ScheduleError(f"{p}: blocks: expected a list of block names")
    if not isinstance(changes, list) or not all(isinstance(r, list) for r in changes):
        raise ScheduleError(f"{p}: changes: expected one list of numbers per block")
    try:
        rows = tuple(tuple(float(v) for v in r) for r in changes)
    except (TypeError, ValueError) as e:
        raise ScheduleError(f"{p}: changes: expected numbers ({e})") from e
    if any(not math.isfinite(v) for r in rows for v in r):
        raise ScheduleError(f"{p}: changes: expected finite numbers")
    profile = BlockProfile(blocks=tuple(blocks), changes=rows)
    if doc.get("id") not in (None, profile_id(profile)):
        raise ScheduleError(f"{p}: id does not match the stored values (the file was edited or is corrupt)")
    return profile
