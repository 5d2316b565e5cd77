"""The report's image grid: the reference beside the front schedules picked at a few budgets, on the first
held-out prompts, generated with the run's evaluator (the model is loaded already) and stored in
``<run>/gallery/`` (PNG files + ``gallery.json``).

A picked schedule is the one ``cachesearch pick --max-cost B`` would print for its budget ``B``: the lowest
held-out loss among the front's files costing at most ``B``. Budgets are spread geometrically over the front's
cost range, so the grid reads from the cheapest schedule to the most faithful one. Images may be single frames
``[3, H, W]`` or videos ``[F, 3, H, W]``: a video shows its first, middle and last frame.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._util import atomic_write

if TYPE_CHECKING:
    import numpy as np

    from .executors.base import Prepared, Progress
    from .export import ExportEntry, ExportResult

__all__ = ["GALLERY_DIR", "Column", "Gallery", "Pick", "frames", "pick_budgets", "write_gallery"]

GALLERY_DIR = "gallery"
N_PROMPTS = 4
MAX_PICKS = 5


@dataclass(frozen=True)
class Pick:
    """A front file picked at a budget (the largest objective value allowed)."""

    budget: float
    entry: ExportEntry


@dataclass
class Column:
    """One column of the grid: the reference (``file`` None) or a picked schedule; ``images[i]`` lists the
    frame files (relative to the run folder) of prompt ``i``; ``error`` says why a column has no images."""

    label: str
    file: str | None = None
    budget: float | None = None
    objective: float | None = None
    train: float | None = None
    heldout: float | None = None
    latency_ms: float | None = None
    images: list[list[str]] = field(default_factory=list)
    error: str | None = None


@dataclass
class Gallery:
    """The grid: held-out prompts (rows), frame labels, and columns."""

    prompts: list[str]
    frame_labels: list[str]
    columns: list[Column]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pick_budgets(entries: list[ExportEntry], max_picks: int = MAX_PICKS) -> list[Pick]:
    """Up to ``max_picks`` distinct front files, each the lowest held-out loss within a budget; budgets are
    spread geometrically from the cheapest to the dearest file (more levels are tried when several budgets
    pick the same file), cheapest first."""
    scored = [e for e in entries if e.quality.heldout is not None and math.isfinite(e.objective)
              and e.objective > 0]
    if not scored:
        return []
    lo, hi = min(e.objective for e in scored), max(e.objective for e in scored)
    picks: list[Pick] = []
    for levels in (max_picks, 2 * max_picks - 1, 4 * max_picks - 3):
        budgets = [lo] if hi <= lo else [lo, *(lo * (hi / lo) ** (i / (levels - 1)) for i in range(1, levels - 1)), hi]
        picks = []
        for b in budgets:
            fits = [e for e in scored if e.objective <= b]
            best = min(fits, key=lambda e: (e.quality.heldout, e.objective))
            if all(p.entry.file != best.file for p in picks):
                picks.append(Pick(budget=b, entry=best))
        if len(picks) >= min(3, len(scored)):
            break
    if len(picks) > max_picks:  # keep the cheapest, the dearest and evenly spaced ones between
        keep = sorted({round(i * (len(picks) - 1) / (max_picks - 1)) for i in range(max_picks)})
        picks = [picks[i] for i in keep]
    return picks


def frames(image: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The frames of one generated image to show, as ``(label, [H, W, 3] uint8)``: an image ``[3, H, W]`` is
    one frame; a video ``[F, 3, H, W]`` shows its first, middle and last frame. Values are in [0, 1]."""
    import numpy as np

    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 3:
        stack, labels = arr[None], ["image"]
    elif arr.ndim == 4:
        last = arr.shape[0] - 1
        picked = sorted({0, last // 2, last})
        stack, labels = arr[picked], [f"frame {i + 1}/{last + 1}" for i in picked]
    else:
        raise ValueError(f"expected an image [3, H, W] or a video [F, 3, H, W], got shape {arr.shape}")
    if stack.shape[1] not in (1, 3):
        raise ValueError(f"expected 1 or 3 channels first, got shape {arr.shape}")
    out = (np.clip(stack, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)
    if out.shape[-1] == 1:
        out = np.repeat(out, 3, axis=-1)
    return list(zip(labels, out))


def _save_png(pixels: np.ndarray, path: Path) -> None:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", optimize=True)
    atomic_write(path, buf.getvalue())


def _store(batch: Any, stem: str, folder: Path, run_dir: Path) -> tuple[list[list[str]], list[str]]:
    """Write each image's frames as PNGs; returns the files per image (relative to ``run_dir``) and the frame
    labels."""
    files: list[list[str]] = []
    labels: list[str] = []
    for i, image in enumerate(batch):
        shown = frames(image.detach().float().cpu().numpy() if hasattr(image, "detach") else image)
        labels = [label for label, _ in shown]
        row = []
        for j, (_, pixels) in enumerate(shown):
            path = folder / (f"{stem}-p{i}.png" if len(shown) == 1 else f"{stem}-p{i}-f{j}.png")
            _save_png(pixels, path)
            row.append(path.relative_to(run_dir).as_posix())
        files.append(row)
    return files, labels


def write_gallery(prep: Prepared, export: ExportResult, progress: Progress | None = None,
                  n_prompts: int = N_PROMPTS) -> Gallery:
    """Generate the grid's images (reference from the cache, each picked schedule on the first ``n_prompts``
    held-out prompts), write them and ``gallery.json`` into ``<run>/gallery/`` and return the grid. A schedule
    whose images cannot be made keeps its column with the reason. Files of earlier grids are removed."""
    from ..schedule import load_schedule

    ev = prep.ev
    run_dir: Path = prep.run_dir
    folder = run_dir / GALLERY_DIR
    folder.mkdir(parents=True, exist_ok=True)
    prompts = list(ev.prompt_set("heldout").prompts)[:n_prompts]
    n = len(prompts)
    picks = pick_budgets(export.entries)
    stage = progress.stage if progress is not None else (lambda *a, **k: None)
    stage("images for the report", 0, len(picks) + 1)
    ref_files, labels = _store(ev.reference("heldout")[:n], "reference", folder, run_dir)
    columns = [Column(label="reference (full compute)", objective=1.0, images=ref_files)]
    for k, p in enumerate(picks):
        e = p.entry
        col = Column(label=f"cost ≤ {p.budget:.3g}", file=e.file, budget=p.budget, objective=e.objective,
                     train=e.quality.train, heldout=e.quality.heldout, latency_ms=e.latency_ms)
        try:
            schedule = load_schedule(export.schedules_dir / e.file)
            col.images, _ = _store(ev.images(schedule, split="heldout", images=slice(0, n)),
                                   Path(e.file).stem, folder, run_dir)
        except Exception as exc:  # noqa: BLE001 - the report shows why, the other columns stay
            col.error = f"{type(exc).__name__}: {exc}"
        columns.append(col)
        stage("images for the report", k + 2, len(picks) + 1)
    gallery = Gallery(prompts=prompts, frame_labels=labels, columns=columns)
    kept = {f for c in columns for row in c.images for f in row}
    for old in folder.glob("*.png"):
        if old.relative_to(run_dir).as_posix() not in kept:
            old.unlink()
    atomic_write(folder / "gallery.json", json.dumps(gallery.to_dict(), indent=1) + "\n")
    return gallery
