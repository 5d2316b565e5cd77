"""Quality metrics: exact values on identical inputs, monotone in noise, metric choice and its provenance."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
import os
import pickle
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from cachesearch.evaluate import _perceptual, _quality
from cachesearch.evaluate._errors import InvalidOutputError, PerceptualMetricUnavailableError
from cachesearch.evaluate._quality import (
    LPIPS_ALEX_CHECKPOINT,
    PerceptualMetric,
    PerceptualMetricName,
    ShiftTolerantLpipsAlexMetric,
    get_perceptual_metric,
    lpips_alex_backbone_available,
    lpips_alex_backbone_path,
    psnr,
    quality_report,
    ssim,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def structured_images(n: int, size: int, *, seed: int = 0) -> torch.Tensor:
    """Smooth images with edges (gradients, a disc, stripes), NCHW in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    images = []
    for _ in range(n):
        cx, cy, r, f = (torch.rand(4, generator=g) * torch.tensor([0.6, 0.6, 0.25, 6.0]) + 0.2).tolist()
        disc = (((xx - cx) ** 2 + (yy - cy) ** 2) < r**2).float()
        stripes = 0.5 + 0.5 * torch.sin(2 * math.pi * f * xx)
        img = torch.stack([0.6 * xx + 0.4 * disc, 0.5 * yy + 0.3 * stripes, 0.3 + 0.5 * disc * stripes])
        images.append(img.clamp(0, 1))
    return torch.stack(images)


@pytest.fixture(scope="module")
def st_metric() -> ShiftTolerantLpipsAlexMetric:
    return ShiftTolerantLpipsAlexMetric()


@pytest.fixture
def no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test instead of letting torch/torchvision reach the network."""

    def refuse(*args: object, **kwargs: object) -> None:
        pytest.fail(f"a download was attempted: {args}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.fixture
def empty_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    if not Path(torch.hub.get_dir()).is_relative_to(tmp_path):  # torch.hub.set_dir() was called elsewhere
        pytest.skip("torch hub dir is pinned by set_dir; TORCH_HOME has no effect")
    return tmp_path


# ---------------------------------------------------------------------------------------------- values


def test_identical_images_give_exact_values(st_metric: PerceptualMetric) -> None:
    x = structured_images(3, 32)
    assert torch.equal(st_metric(x, x.clone()), torch.zeros(3))
    assert torch.equal(psnr(x, x.clone()), torch.full((3,), math.inf, dtype=torch.float64))
    assert torch.equal(ssim(x, x.clone()), torch.ones(3, dtype=torch.float64))


def test_more_noise_is_worse_on_every_metric(st_metric: PerceptualMetric) -> None:
    ref = structured_images(2, 32, seed=1)
    noise = torch.randn(ref.shape, generator=torch.Generator().manual_seed(2))
    levels = (0.02, 0.06, 0.15)
    cands = [(ref + s * noise).clamp(0, 1) for s in levels]
    lp = torch.stack([st_metric(c, ref) for c in cands])  # [levels, N]
    ps = torch.stack([psnr(c, ref) for c in cands])
    ss = torch.stack([ssim(c, ref) for c in cands])
    assert (lp > 0).all()
    assert (lp[1:] > lp[:-1]).all(), lp
    assert (ps[1:] < ps[:-1]).all(), ps
    assert (ss[1:] < ss[:-1]).all(), ss


def test_psnr_matches_definition() -> None:
    ref = torch.full((1, 3, 16, 16), 0.5, dtype=torch.float64)
    cand = ref + 0.1  # mse = 0.01 -> 20 dB
    assert psnr(cand, ref).item() == pytest.approx(20.0, abs=1e-9)


def test_quality_report_records_metric_name(st_metric: PerceptualMetric) -> None:
    ref = structured_images(3, 32)
    cand = (ref + 0.05 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    report = quality_report(cand, ref, st_metric)
    assert report["perceptual_metric"] == "stlpips-alex" == st_metric.name
    assert report["num_images"] == 3
    assert report["perceptual"] == pytest.approx(float(st_metric(cand, ref).double().mean()), rel=1e-6)
    assert report["psnr"] == pytest.approx(float(psnr(cand, ref).mean()))
    assert report["ssim"] == pytest.approx(float(ssim(cand, ref).mean()))
    assert all(type(report[k]) is float for k in ("perceptual", "psnr", "ssim"))


def test_small_grey_and_non_square_images(st_metric: PerceptualMetric) -> None:
    # 16 px is below the trunk's minimum (21 px): upsampled to min_size before the trunk.
    ref = structured_images(2, 16)
    cand = (ref + 0.1).clamp(0, 1)
    assert (st_metric(cand, ref) > 0).all()
    grey = ref[:, :1]
    assert st_metric(grey, grey).tolist() == [0.0, 0.0]
    wide = torch.nn.functional.interpolate(ref, size=(24, 40), mode="bilinear")
    assert st_metric((wide + 0.1).clamp(0, 1), wide).shape == (2,)
    with pytest.raises(ValueError, match="min_size"):
        ShiftTolerantLpipsAlexMetric(min_size=16)


# -------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("bad_value", [math.nan, math.inf, -math.inf])
def test_non_finite_candidates_raise_invalid_output(st_metric: PerceptualMetric, bad_value: float) -> None:
    ref = structured_images(4, 32)
    cand = ref.clone()
    cand[1, 0, 3, 3] = bad_value
    cand[3, 2, 0, 0] = bad_value
    for fn in (st_metric, psnr, ssim, lambda a, b: quality_report(a, b, st_metric)):
        with pytest.raises(InvalidOutputError, match="2 of 4 candidate images") as info:
            fn(cand, ref)
        assert (info.value.num_invalid, info.value.num_total) == (2, 4)
    assert isinstance(info.value, RuntimeError)
    restored = pickle.loads(pickle.dumps(info.value))
    assert (restored.num_invalid, restored.num_total, str(restored)) == (2, 4, str(info.value))


def test_bad_inputs_raise_real_exceptions() -> None:
    x = structured_images(2, 32)
    with pytest.raises(ValueError, match="shape"):
        psnr(x, x[:1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        psnr(x * 2, x)
    with pytest.raises(TypeError, match="floating"):
        psnr((x * 255).to(torch.uint8), (x * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="NCHW"):
        psnr(x[0], x[0])
    with pytest.raises(ValueError, match="channels"):
        psnr(x[:, :2], x[:, :2])
    ref = x.clone()
    ref[0, 0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="references"):
        psnr(x, ref)
    with pytest.raises(ValueError, match="at least 11"):
        ssim(x[..., :8, :8], x[..., :8, :8])
    with pytest.raises(TypeError):
        quality_report(x, x, metric="stlpips-alex")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- metric selection


def test_falls_back_when_lpips_backbone_unavailable(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, no_download: None
) -> None:
    if importlib.util.find_spec("lpips") is not None:
        import lpips

        def no_lpips(*args: object, **kwargs: object) -> None:
            pytest.fail("lpips.LPIPS must not be built when its backbone is unavailable")

        monkeypatch.setattr(lpips, "LPIPS", no_lpips)
    with caplog.at_level(logging.WARNING, logger=_quality.__name__):
        metric = get_perceptual_metric("lpips-alex", lpips_backbone_available=lambda: False)
    assert metric.name == "stlpips-alex"
    assert isinstance(metric, ShiftTolerantLpipsAlexMetric)
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "'lpips-alex' is unavailable" in warning and "'stlpips-alex'" in warning


def test_default_check_looks_at_hub_cache_only(empty_torch_home: Path, no_download: None) -> None:
    assert lpips_alex_backbone_path() == Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_ALEX_CHECKPOINT
    assert not lpips_alex_backbone_available()
    assert get_perceptual_metric().name == "stlpips-alex"


def test_lpips_alex_used_when_backbone_cached(
    empty_torch_home: Path, no_download: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the AlexNet checkpoint in the hub cache, lpips-alex is built from that file, with no download.

    The checkpoint written here is a stand-in with the right keys and shapes (constant tensors, stored as
    zero-stride views so the file is tiny): it tests the loading path only, never metric values.
    """
    pytest.importorskip("lpips")
    tv_models = pytest.importorskip("torchvision.models")
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in tv_models.alexnet(weights=None).state_dict().items()}
    state = {k: torch.full((1,), 0.001 * (i + 1)).expand(shape) for i, (k, shape) in enumerate(shapes.items())}
    path = lpips_alex_backbone_path()
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    calls: list[dict[str, object]] = []
    real_alexnet = tv_models.alexnet

    def spy(*args: object, **kwargs: object) -> torch.nn.Module:
        calls.append(kwargs)
        return real_alexnet(*args, **kwargs)

    monkeypatch.setattr(tv_models, "alexnet", spy)
    metric = get_perceptual_metric("lpips-alex")
    assert metric.name == "lpips-alex"
    # lpips asked torchvision for the pretrained trunk exactly once, never for a random one.
    assert len(calls) == 1 and (calls[0].get("pretrained") is True or calls[0].get("weights") is not None)
    conv1 = metric.model.net.slice1[0].weight  # type: ignore[union-attr]
    assert torch.equal(conv1, torch.full_like(conv1, 0.001))  # loaded from the cached file
    x = structured_images(1, 32)
    assert metric(x, x).tolist() == [0.0]


def test_corrupt_cached_backbone_falls_back(
    empty_torch_home: Path, no_download: None, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("lpips")
    path = lpips_alex_backbone_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.WARNING, logger=_quality.__name__):
        metric = get_perceptual_metric("lpips-alex")
    assert metric.name == "stlpips-alex"
    assert "could not be built" in caplog.text


def test_prefer_stlpips_and_unknown_names(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=_quality.__name__):
        metric = get_perceptual_metric(PerceptualMetricName.STLPIPS_ALEX)
    assert metric.name == "stlpips-alex"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    with pytest.raises(ValueError, match="unknown perceptual metric"):
        get_perceptual_metric("lpips-vgg")


def test_clear_error_when_no_metric_can_be_built(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> Path:
        raise PerceptualMetricUnavailableError("stlpips-alex needs the stlpips-pytorch package")

    monkeypatch.setattr(_perceptual, "_stlpips_weights_path", missing)
    with pytest.raises(PerceptualMetricUnavailableError, match="pip install") as info:
        get_perceptual_metric(lpips_backbone_available=lambda: False)
    assert "stlpips-pytorch" in str(info.value) and "alexnet-owt" in str(info.value)


# ------------------------------------------------------------------------------ weights and provenance


def test_stlpips_weights_are_the_packaged_ones(st_metric: ShiftTolerantLpipsAlexMetric) -> None:
    spec = importlib.util.find_spec("stlpips_pytorch")
    assert spec is not None and spec.submodule_search_locations
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    path = st_metric.weights_path
    assert path == package_dir / "weights" / "vST0.0" / "alex_shift_tolerant.pth"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == st_metric.weights_sha256
    expected = torch.load(path, map_location="cpu", weights_only=True)
    actual = st_metric.model.state_dict()
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(actual[key].cpu(), value), key
    conv1 = actual["net.slice1.0.weight"].contiguous().numpy().tobytes()
    assert hashlib.sha256(conv1).digest() == hashlib.sha256(expected["net.slice1.0.weight"].numpy().tobytes()).digest()


def test_matches_stlpips_reference_implementation(
    st_metric: ShiftTolerantLpipsAlexMetric, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The package imports IPython and torchsummary at module level but never uses them on this path.
    for name, attrs in (("IPython", {"embed": None}), ("torchsummary", {"summary": None})):
        if importlib.util.find_spec(name) is None:
            monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**attrs))
    for name in [m for m in sys.modules if m.startswith("stlpips_pytorch")]:
        monkeypatch.delitem(sys.modules, name)
    from stlpips_pytorch import stlpips

    reference = stlpips.LPIPS(net="alex", variant="shift_tolerant", verbose=False)
    ref = structured_images(3, 64, seed=4)
    cand = (ref + 0.08 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(5))).clamp(0, 1)
    with torch.no_grad():
        expected = reference(cand, ref, normalize=True).flatten()
    torch.testing.assert_close(st_metric(cand, ref), expected, rtol=1e-5, atol=1e-7)


def test_reference_features_are_kept_and_the_distances_stay_bit_identical() -> None:
    """A repeated reference batch runs the trunk on the candidates only (counted at its first convolution), and
    the distances equal a fresh metric's and the network's own two-input forward bit for bit."""
    metric, fresh = ShiftTolerantLpipsAlexMetric(batch_size=4), ShiftTolerantLpipsAlexMetric(batch_size=4)
    ref = structured_images(6, 32, seed=7)  # two batches: 4 + 2
    runs: list[int] = []
    metric.model.net.slice1[0].register_forward_hook(lambda m, args, out: runs.append(args[0].shape[0]))
    for seed in (8, 9, 10):
        cand = (ref + 0.05 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(seed))).clamp(0, 1)
        runs.clear()
        got = metric(cand, ref)
        assert sum(runs) == (12 if seed == 8 else 6), runs  # candidates and references, then candidates only
        assert torch.equal(got, fresh(cand, ref.clone()))
        with torch.inference_mode():
            scaled = [metric._resize(t) * 2 - 1 for t in (cand, ref)]
            direct = torch.cat([metric.model(scaled[0][i:i + 4], scaled[1][i:i + 4]) for i in (0, 4)])
        assert torch.equal(got, direct)
    other = ref.flip(0)  # other content, same shapes: not served from the cache
    runs.clear()
    assert torch.equal(metric(ref, other), fresh(ref, other))
    assert sum(runs) == 12
    assert torch.equal(metric(ref, ref.clone()), torch.zeros(6))
    metric.reference_cache_bytes = 1  # features too large to keep: computed each time, same distances
    metric._reference_cache.clear()
    runs.clear()
    assert torch.equal(metric(cand, ref), fresh(cand, ref)) and sum(runs) == 12 and not metric._reference_cache


def test_checkpoint_name_matches_torchvision() -> None:
    tv_models = pytest.importorskip("torchvision.models")
    assert tv_models.AlexNet_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1] == LPIPS_ALEX_CHECKPOINT


def test_import_is_light() -> None:
    code = (
        "import sys, cachesearch.evaluate._quality\n"
        "heavy = [m for m in ('lpips', 'stlpips_pytorch', 'torchvision', 'skimage') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    path = [str(REPO_ROOT / "src"), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
