"""Tests of model loading: folders, the local hub cache (never the network), presets, the embedded model."""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline

from cachesearch.models import _loaders
from cachesearch.models._errors import ModelLoadError
from cachesearch.models._loaders import LoadedModel, load_model, normalize_spec
from tests._tiny import tiny_sd_pipeline

GEN_KW = {"num_inference_steps": 2, "height": 32, "width": 32, "output_type": "np"}


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt to open a network connection fail loudly."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "pipe"
    tiny_sd_pipeline(blocks=3).save_pretrained(folder)
    return folder


def _generate(pipe: StableDiffusionPipeline) -> np.ndarray:
    return pipe("a red cat", generator=torch.Generator().manual_seed(0), **GEN_KW).images


def test_folder_roundtrip_gives_equal_outputs(tiny_folder: Path, no_network: None) -> None:
    expected = _generate(tiny_sd_pipeline(blocks=3))
    loaded = load_model(str(tiny_folder))
    assert isinstance(loaded, LoadedModel)
    assert loaded.source == f"path:{tiny_folder.resolve()}"
    assert loaded.family == "unet2d" and loaded.random_weights is False
    assert loaded.denoiser is loaded.pipe.unet
    assert loaded.pipe.unet.dtype == torch.float32 and loaded.pipe.safety_checker is None
    np.testing.assert_array_equal(_generate(loaded.pipe), expected)
    again = load_model(f"path:{tiny_folder}")
    assert again.source == loaded.source


def test_local_hub_cache_is_used_without_network(tiny_folder: Path, tmp_path: Path, no_network: None) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someorg--tiny-sd"
    shutil.copytree(tiny_folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    loaded = load_model("someorg/tiny-sd", cache_dir=tmp_path / "hub")
    assert loaded.source == "hub:someorg/tiny-sd" and loaded.family == "unet2d"
    np.testing.assert_array_equal(_generate(loaded.pipe), _generate(tiny_sd_pipeline(blocks=3)))
    assert load_model("hub:someorg/tiny-sd", cache_dir=tmp_path / "hub").source == "hub:someorg/tiny-sd"


def test_uncached_hub_id_fails_fast_with_instructions(tmp_path: Path, no_network: None) -> None:
    start = time.perf_counter()
    with pytest.raises(ModelLoadError) as info:
        load_model("nobody-xyz/not-a-model", cache_dir=tmp_path)
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert "not cached locally" in message
    assert "huggingface-cli download nobody-xyz/not-a-model" in message
    assert "HF_HOME" in message and "path" in message
    assert isinstance(info.value, ValueError)
    # the default cache location too (empty on this machine for that id)
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="not cached locally"):
        load_model("hub:nobody-xyz/not-a-model")
    assert time.perf_counter() - start < 10


def test_partly_cached_hub_model_is_a_load_error(tiny_folder: Path, tmp_path: Path, no_network: None) -> None:
    commit = "f" * 40
    snapshot = tmp_path / "models--someorg--broken" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    shutil.copy(tiny_folder / "model_index.json", snapshot / "model_index.json")
    (tmp_path / "models--someorg--broken" / "refs").mkdir()
    (tmp_path / "models--someorg--broken" / "refs" / "main").write_text(commit)
    with pytest.raises(ModelLoadError, match="only partly cached"):
        load_model("someorg/broken", cache_dir=tmp_path)


def test_unknown_arch_and_bad_specs() -> None:
    with pytest.raises(ModelLoadError, match=r"unknown arch preset 'sd4'.*'arch:sd15', 'arch:sdxl', 'arch:flux', "
                                             r"'arch:sd3', 'arch:pixart-sigma'"):
        load_model("arch:sd4")
    with pytest.raises(ModelLoadError, match="unknown embedded model"):
        load_model("embedded:cats")
    for bad in ("", "not a spec!", "hub:a/b/c", "path:"):
        with pytest.raises(ModelLoadError, match="valid"):
            load_model(bad)
    with pytest.raises(ModelLoadError, match="must be a str"):
        load_model(42)  # type: ignore[arg-type]


def test_missing_folder_and_non_pipeline_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such folder"):
        load_model(str(tmp_path / "missing"))
    with pytest.raises(ModelLoadError, match="no model_index.json"):
        load_model(str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="no model_index.json"):
        load_model(f"path:{tmp_path}")


def test_invalid_device_and_dtype(tiny_folder: Path) -> None:
    with pytest.raises(ValueError, match="device"):
        load_model(str(tiny_folder), device="gpu:zero")
    with pytest.raises(ValueError, match="dtype"):
        load_model(str(tiny_folder), dtype=torch.int32)


def test_normalize_spec() -> None:
    assert normalize_spec("embedded") == ("embedded", "shapes")
    assert normalize_spec(" embedded:shapes ") == ("embedded", "shapes")
    assert normalize_spec("arch:sdxl") == ("arch", "sdxl")
    assert normalize_spec("runwayml/stable-diffusion-v1-5") == ("hub", "runwayml/stable-diffusion-v1-5")
    assert normalize_spec("hub:org/name") == ("hub", "org/name")
    kind, value = normalize_spec("./some/folder")
    assert kind == "path" and Path(value).is_absolute()
    assert normalize_spec("a/b/c")[0] == "path"


def test_arch_preset_is_flagged_random() -> None:
    loaded = load_model("arch:sd15", device="meta")
    assert loaded.source == "arch:sd15" and loaded.random_weights is True and loaded.family == "unet2d"
    assert loaded.pipe._cachesearch_random_weights is True
    assert loaded.denoiser.dtype == torch.float32  # float16 is only the default on CUDA


def test_default_dtypes() -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert _loaders._default_dtype("arch", cuda) == torch.float16
    assert _loaders._default_dtype("hub", cuda) == torch.float16
    assert _loaders._default_dtype("path", cuda) == torch.float16
    assert _loaders._default_dtype("embedded", cuda) == torch.float32
    assert _loaders._default_dtype("arch", cpu) == torch.float32


def test_embedded_calls_shapes_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    shapes = pytest.importorskip("cachesearch.embedded.shapes")
    calls: list[tuple[torch.device, torch.dtype]] = []

    def fake_load_pipeline(device: torch.device, dtype: torch.dtype) -> StableDiffusionPipeline:
        calls.append((device, dtype))
        pipe = tiny_sd_pipeline()
        del pipe._cachesearch_random_weights  # as a trained pipeline would be
        return pipe

    monkeypatch.setattr(shapes, "load_pipeline", fake_load_pipeline)
    loaded = load_model()
    assert calls == [(torch.device("cpu"), torch.float32)]
    assert loaded.source == "embedded:shapes" and loaded.random_weights is False and loaded.family == "unet2d"

    def missing(device: torch.device, dtype: torch.dtype) -> StableDiffusionPipeline:
        raise FileNotFoundError("no diffusers pipeline at /x (model_index.json missing)")

    monkeypatch.setattr(shapes, "load_pipeline", missing)
    with pytest.raises(ModelLoadError, match="embedded model's weights are missing"):
        load_model("embedded:shapes")


def test_embedded_model_if_shipped() -> None:
    shapes = pytest.importorskip("cachesearch.embedded.shapes")
    index = shapes.pipeline_path() / "model_index.json"
    if not index.is_file():
        pytest.skip("the embedded model's weights are not in the package yet")
    loaded = load_model("embedded")
    assert loaded.source == "embedded:shapes" and loaded.random_weights is False
    assert json.loads(index.read_text())["unet"][1] == type(loaded.denoiser).__name__
