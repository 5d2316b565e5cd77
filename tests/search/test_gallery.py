"""The image grid's choice of schedules (as ``cachesearch pick`` would choose them) and its frames (images and
videos), without a model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from cachesearch.schedule import load_front
from cachesearch.search.export import INDEX_FORMAT, ExportEntry, QualityPair
from cachesearch.search.gallery import Column, Gallery, _store, frames, pick_budgets
from cachesearch.search.html_report._page import grid_html


def _entry(i: int, cost: float, heldout: float | None) -> ExportEntry:
    return ExportEntry(file=f"t{i:04d}-x.yaml", name=f"x{i}", trial=i, baseline=None, baseline_kind=None, policy={},
                       quality=QualityPair(train=heldout, heldout=heldout, metric="m"), objective=cost,
                       cost_ratio=cost, speedup=1 / cost, latency_ms=None,
                       accuracy=QualityPair(train=None, heldout=None))


FRONT = [_entry(1, 0.1, 0.5), _entry(2, 0.15, 0.6), _entry(3, 0.2, 0.3), _entry(4, 0.35, 0.1),
         _entry(5, 0.5, 0.05), _entry(6, 0.7, 0.01), _entry(7, 0.95, 0.001), _entry(8, 0.3, None)]


def test_each_pick_is_what_pick_max_cost_prints_for_its_budget(tmp_path: Path) -> None:
    picks = pick_budgets(FRONT)
    assert 3 <= len(picks) <= 5
    assert [p.entry.objective for p in picks] == sorted(p.entry.objective for p in picks)  # cheapest first
    assert len({p.entry.file for p in picks}) == len(picks)
    assert picks[0].entry.file == "t0001-x.yaml" and picks[-1].entry.file == "t0007-x.yaml"
    index = {"format": INDEX_FORMAT, "schedules": [e.to_dict() for e in FRONT]}
    (tmp_path / "index.yaml").write_text(yaml.safe_dump(index))
    front = load_front(tmp_path / "index.yaml")
    for p in picks:
        assert front.choose(max_cost=p.budget).file == p.entry.file


def test_few_or_no_scored_files() -> None:
    assert pick_budgets([]) == []
    assert pick_budgets([_entry(1, 0.4, None)]) == []
    (only,) = pick_budgets([_entry(1, 0.4, 0.2)])
    assert only.entry.file == "t0001-x.yaml" and only.budget == pytest.approx(0.4)
    assert len(pick_budgets(FRONT, max_picks=3)) == 3


def test_an_image_is_one_frame_and_a_video_shows_first_middle_last() -> None:
    (label, pixels), = frames(np.full((3, 4, 5), 0.5))
    assert label == "image" and pixels.shape == (4, 5, 3) and pixels.dtype == np.uint8 and pixels[0, 0, 0] == 128
    video = np.stack([np.full((3, 2, 2), k / 8) for k in range(9)])
    shown = frames(video)
    assert [label for label, _ in shown] == ["frame 1/9", "frame 5/9", "frame 9/9"]
    assert [int(p[0, 0, 0]) for _, p in shown] == [0, 128, 255]
    assert len(frames(video[:1])) == 1
    with pytest.raises(ValueError, match=r"\[F, 3, H, W\]"):
        frames(np.zeros((2, 2)))


def test_a_video_grid_has_three_frames_per_cell(tmp_path: Path) -> None:
    folder = tmp_path / "gallery"
    folder.mkdir()
    batch = np.random.default_rng(0).random((2, 5, 3, 8, 8)).astype(np.float32)
    files, labels = _store(batch, "reference", folder, tmp_path)
    assert labels == ["frame 1/5", "frame 3/5", "frame 5/5"]
    assert files[1] == ["gallery/reference-p1-f0.png", "gallery/reference-p1-f1.png", "gallery/reference-p1-f2.png"]
    gallery = Gallery(prompts=["a", "b"], frame_labels=labels,
                      columns=[Column(label="reference", images=files),
                               Column(label="cost ≤ 0.5", file="t1.yaml", error="ValueError: boom")])
    html = grid_html(gallery, tmp_path, "m", "cost ratio")
    assert html.count('<img class="grid-image" src="data:image/png;base64,') == 6
    assert html.count("no image: ValueError: boom") == 2


def test_mask_heatmap_has_one_cell_per_block_step_and_a_runtime_schedule_says_it_has_none() -> None:
    from cachesearch.schedule import load_schedule
    from cachesearch.search.html_report._masks import mask_svg

    golden = Path(__file__).parents[1] / "schedule" / "golden"
    static = load_schedule(golden / "v1_deepcache.yaml")
    svg = mask_svg(static)
    rows = sum(1 if bm.shared else 2 for bm in static.blocks)
    assert svg.count("<rect ") == rows * static.num_steps
    assert svg.count("recompute\"") == sum(m.count("R") for bm in static.blocks for m in
                                            ((bm.cond,) if bm.shared else (bm.cond, bm.uncond)))
    runtime = load_schedule(golden / "v4_dbcache.yaml")
    text = mask_svg(runtime)
    assert "<rect" not in text and "Runtime schedule: cache-dit" in text and "DBCacheConfig" in text
