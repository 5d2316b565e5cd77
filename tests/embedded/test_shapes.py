"""Tests of the embedded ``shapes`` model: data, checker, shipped pipeline, gate (trainer: tests/training)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from cachesearch.embedded import shapes
from cachesearch.embedded.shapes._checker import to_uint8
from cachesearch.embedded.shapes._data import MARGIN, all_captions, shape_mask, size_range

SPEC_PALETTE = {
    "red": (230, 25, 75),
    "green": (60, 180, 75),
    "blue": (0, 130, 200),
    "yellow": (255, 225, 25),
    "orange": (245, 130, 48),
    "purple": (145, 30, 180),
    "cyan": (70, 240, 240),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
}


def test_palette_and_shapes_match_spec() -> None:
    assert shapes.PALETTE == SPEC_PALETTE
    assert tuple(SPEC_PALETTE) == shapes.COLORS
    assert shapes.SHAPES == ("circle", "square", "triangle", "cross")


def test_random_caption_format_and_distinct_colors() -> None:
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(2000):
        text = shapes.random_caption(rng)
        words = text.split(" ")
        assert len(words) == 7 and words[0] == "a" and words[3:5] == ["on", "a"] and words[6] == "background"
        assert words[1] in shapes.COLORS and words[5] in shapes.COLORS and words[1] != words[5]
        assert words[2] in shapes.SHAPES
        c = shapes.parse_caption(text)
        assert (c.fg, c.shape, c.bg) == (words[1], words[2], words[5]) and c.text() == text
        seen.add(text)
    assert len(seen) > 300  # covers (nearly) all 360 combinations
    assert len(all_captions()) == 4 * 10 * 9


@pytest.mark.parametrize(
    "bad",
    ["a red circle on a red background", "a pink circle on a red background", "a red blob on a blue background",
     "red circle on blue", ""],
)
def test_parse_caption_rejects_invalid(bad: str) -> None:
    with pytest.raises(ValueError):
        shapes.parse_caption(bad)


def test_render_is_deterministic_and_inside() -> None:
    sizes = set()
    for seed in range(300):
        c = all_captions()[seed % 360]
        img = shapes.render(c.shape, c.fg, c.bg, size=32, seed=seed)
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8
        np.testing.assert_array_equal(img, shapes.render(c.shape, c.fg, c.bg, size=32, seed=seed))
        fg_px = np.all(img == shapes.PALETTE[c.fg], axis=-1)
        bg_px = np.all(img == shapes.PALETTE[c.bg], axis=-1)
        assert np.all(fg_px | bg_px)  # exactly two colors
        assert fg_px.sum() > 0
        ys, xs = np.nonzero(fg_px)  # shape stays MARGIN px away from every border
        assert ys.min() >= MARGIN and xs.min() >= MARGIN and ys.max() < 32 - MARGIN and xs.max() < 32 - MARGIN
        sizes.add((ys.max() - ys.min(), xs.max() - xs.min()))
    assert len(sizes) > 5  # size varies
    a = shapes.render("circle", "red", "blue", size=32, seed=1)
    b = shapes.render("circle", "red", "blue", size=32, seed=2)
    assert not np.array_equal(a, b)  # position/size vary with the seed
    with pytest.raises(ValueError):
        shapes.render("circle", "red", "red", size=32, seed=0)
    with pytest.raises(ValueError):
        shapes.render("circle", "red", "blue", size=32)


def test_checker_is_exact_on_every_ground_truth_combination() -> None:
    for i, c in enumerate(all_captions()):
        img = shapes.render(c.shape, c.fg, c.bg, size=32, seed=10_000 + i)
        r = shapes.check(img, c.text())
        assert r.all_ok, (c, r)


@pytest.mark.parametrize("shape", ["circle", "square", "triangle", "cross"])
def test_checker_classifies_every_shape_size(shape: str) -> None:
    lo, hi = size_range(32)
    for s in range(lo, hi + 1):
        img = np.zeros((32, 32, 3), np.uint8)
        img[:] = shapes.PALETTE["gray"]
        img[3 : 3 + s, 4 : 4 + s][shape_mask(shape, s, s)] = shapes.PALETTE["yellow"]
        r = shapes.check(img, f"a yellow {shape} on a gray background")
        assert r.all_ok, (shape, s, r.shape_scores)


def test_checker_rejects_wrong_captions_and_accepts_float_tensors() -> None:
    img = shapes.render("triangle", "orange", "cyan", size=32, seed=3)
    r = shapes.check(img, "a red square on a black background")
    assert (r.bg_ok, r.fg_ok, r.shape_ok) == (False, False, False)
    assert (r.predicted_bg, r.predicted_fg, r.predicted_shape) == ("cyan", "orange", "triangle")
    chw = torch.from_numpy(img).permute(2, 0, 1).float() / 255.0
    assert shapes.check(chw, "a orange triangle on a cyan background").all_ok
    np.testing.assert_array_equal(to_uint8(chw), img)
    blank = np.zeros((32, 32, 3), np.uint8)
    r = shapes.check(blank, "a red circle on a black background")
    assert r.bg_ok and not r.fg_ok and r.predicted_shape is None
    with pytest.raises(ValueError):
        shapes.check(np.zeros((32, 32), np.uint8), "a red circle on a black background")


def test_import_is_light() -> None:
    # what ``cachesearch.embedded.shapes`` itself adds on top of ``cachesearch`` (and torch)
    code = (
        "import sys, cachesearch, torch; before = set(sys.modules); import cachesearch.embedded.shapes; "
        "new = set(sys.modules) - before; "
        "bad = sorted(m for m in new if m.split('.')[0] in ('diffusers', 'transformers', 'training') "
        "or m.endswith('shapes._components')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_shipped_weights_are_small() -> None:
    folder = shapes.pipeline_path()
    files = list(folder.rglob("*.safetensors"))
    assert {f.parent.name for f in files} == {"unet", "vae", "text_encoder"}
    total = sum(f.stat().st_size for f in files)
    assert total <= 20_000_000, total


@pytest.fixture(scope="module")
def pipe():
    return shapes.load_pipeline()


def test_tokenizer_has_one_token_per_word(pipe) -> None:
    tok = pipe.tokenizer
    words = {w for c in all_captions() for w in c.text().split()}
    for w in words:
        assert len(tok(w, add_special_tokens=False).input_ids) == 1, w
    assert tok.model_max_length >= len(tok("a purple triangle on a yellow background").input_ids)


def test_pipeline_architecture(pipe) -> None:
    from diffusers import DDIMScheduler, UNet2DConditionModel

    unet = pipe.unet
    assert isinstance(unet, UNet2DConditionModel)
    assert unet.config.layers_per_block == 2
    assert len(unet.down_blocks) >= 3 and len(unet.up_blocks) == len(unet.down_blocks)
    assert all(len(b.resnets) == 3 for b in unet.up_blocks)
    assert any(getattr(b, "has_cross_attention", False) for b in unet.down_blocks)
    assert unet.mid_block is not None
    assert isinstance(pipe.scheduler, DDIMScheduler)
    assert pipe.safety_checker is None
    assert unet.dtype == torch.float32


def test_pipeline_generates_deterministically(pipe, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    prompt = "a red circle on a blue background"

    def run(seed: int) -> np.ndarray:
        g = torch.Generator().manual_seed(seed)
        return pipe(prompt, num_inference_steps=4, guidance_scale=shapes.DEFAULT_GUIDANCE_SCALE, generator=g,
                    output_type="np").images[0]

    a, b, c = run(0), run(0), run(1)
    assert a.shape == (32, 32, 3) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_quality_gate_runs_on_a_tiny_budget(pipe) -> None:
    from cachesearch.embedded.shapes._gate import eval_pairs, quality_gate

    pairs = eval_pairs(3, seed=0)
    assert pairs == eval_pairs(3, seed=0) and all(s >= 1_000_000 for _, s in pairs)
    res = quality_gate(pipe, n=3, steps=2, guidance_scale=shapes.DEFAULT_GUIDANCE_SCALE, seed=0)
    for key in ("color_both_acc", "bg_acc", "fg_acc", "shape_acc", "all_acc"):
        assert 0.0 <= res[key] <= 1.0
    assert res["n"] == 3 and res["steps"] == 2
