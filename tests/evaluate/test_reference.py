"""Reference cache: keyed on everything that determines the images, verified on load, rebuilt when corrupt."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from cachesearch.embedded import shapes
from cachesearch.evaluate import EvalConfig, Evaluator, ReferenceCache
from cachesearch.evaluate._reference import key_digest, weights_hash
from cachesearch.models._loaders import LoadedModel, load_model
from tests._tiny import tiny_sd_pipeline

EMBEDDED_WEIGHTS = shapes.pipeline_path() / "unet" / "diffusion_pytorch_model.safetensors"
needs_embedded = pytest.mark.skipif(
    not EMBEDDED_WEIGHTS.is_file(), reason="embedded weights are still being trained (file absent)"
)

KEY = {"fingerprint": "sha256:abc", "prompts": "sha256:def", "num_inference_steps": 4}


def _images(n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


# -- the store on its own ----------------------------------------------------------------------------------
def test_store_then_load_round_trips_exactly(tmp_path: Path) -> None:
    cache = ReferenceCache(tmp_path)
    imgs = _images()
    cache.store(KEY, imgs)
    loaded, why = cache.load(KEY)
    assert why is None and loaded is not None
    assert torch.equal(loaded, imgs)
    data, meta = cache.paths(KEY)
    assert data.name == f"{key_digest(KEY)}.safetensors"
    sidecar = json.loads(meta.read_text())
    assert sidecar["key"] == KEY and sidecar["shape"] == [2, 3, 8, 8]
    assert not [p for p in tmp_path.rglob("*.tmp")]  # temp files never left behind


def test_missing_entry_is_a_plain_miss(tmp_path: Path) -> None:
    assert ReferenceCache(tmp_path).load(KEY) == (None, None)


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda d, m: d.write_bytes(d.read_bytes()[: len(d.read_bytes()) // 2]), "checksum"),
        (lambda d, m: d.write_bytes(d.read_bytes()[:-4] + b"\0\0\0\0"), "checksum"),
        (lambda d, m: m.unlink(), "sidecar .* missing"),
        (lambda d, m: m.write_text("{not json"), "unreadable"),
        (lambda d, m: m.write_text(json.dumps({**json.loads(m.read_text()), "key": {"x": 1}})), "different key"),
        (lambda d, m: m.write_text(json.dumps({**json.loads(m.read_text()), "format": "v0"})), "unknown format"),
    ],
)
def test_corrupt_or_partial_files_are_detected(tmp_path: Path, damage, why: str) -> None:
    cache = ReferenceCache(tmp_path)
    cache.store(KEY, _images())
    damage(*cache.paths(KEY))
    loaded, reason = cache.load(KEY)
    assert loaded is None
    assert reason is not None and re.search(why, reason), reason


def test_get_or_build_rebuilds_a_truncated_file_and_reports_why(tmp_path: Path) -> None:
    cache = ReferenceCache(tmp_path)
    calls = []

    def build() -> torch.Tensor:
        calls.append(1)
        return _images(seed=len(calls))

    first, info = cache.get_or_build(KEY, build)
    assert not info.hit and info.rebuilt_because is None and len(calls) == 1
    again, info = cache.get_or_build(KEY, build)
    assert info.hit and len(calls) == 1 and torch.equal(again, first)
    data, _ = cache.paths(KEY)
    data.write_bytes(data.read_bytes()[:100])
    rebuilt, info = cache.get_or_build(KEY, build)
    assert not info.hit and "checksum" in (info.rebuilt_because or "") and len(calls) == 2
    assert cache.load(KEY)[0] is not None and torch.equal(cache.load(KEY)[0], rebuilt)


def test_store_refuses_non_image_tensors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="float32 NCHW"):
        ReferenceCache(tmp_path).store(KEY, torch.zeros(2, 3, 8, dtype=torch.float32))


def test_weights_hash_sees_one_changed_weight() -> None:
    pipe = tiny_sd_pipeline(seed=0)
    before = weights_hash(pipe)
    assert before == weights_hash(tiny_sd_pipeline(seed=0))
    with torch.no_grad():
        pipe.vae.decoder.conv_out.bias[0] += 1e-3
    assert weights_hash(pipe) != before


# -- through the evaluator ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def embedded() -> LoadedModel:
    if not EMBEDDED_WEIGHTS.is_file():
        pytest.skip("embedded weights are still being trained (file absent)")
    return load_model("embedded")


def _config(cache_dir: Path, **kw) -> EvalConfig:
    base = dict(num_inference_steps=4, n_train=2, n_heldout=1, batch_size=2, cache_dir=str(cache_dir))
    return EvalConfig(**{**base, **kw})


@needs_embedded
def test_second_evaluator_hits_the_cache_without_recomputing(
    embedded: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = Evaluator(_config(tmp_path), model=embedded)
    ref = first.reference("train")
    info = first.reference_info("train")
    assert not info.hit and info.path.is_file()
    assert ref.shape == (2, 3, first.height, first.width) and ref.dtype == torch.float32
    assert float(ref.min()) >= 0 and float(ref.max()) <= 1

    second = Evaluator(_config(tmp_path), model=embedded)  # fresh state, as in a new process

    def no_generation(*args, **kwargs):
        raise AssertionError("the reference was recomputed although it is cached")

    monkeypatch.setattr(second.fixtures, "generate_batch", no_generation)
    monkeypatch.setattr(second.fixtures, "build_reference", no_generation)
    again = second.reference("train")
    assert second.reference_info("train").hit
    assert torch.equal(again, ref)


@needs_embedded
def test_truncated_reference_is_rebuilt_not_trusted(embedded: LoadedModel, tmp_path: Path) -> None:
    ev = Evaluator(_config(tmp_path), model=embedded)
    ref = ev.reference("train")
    path = ev.reference_info("train").path
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    fresh = Evaluator(_config(tmp_path), model=embedded)
    rebuilt = fresh.reference("train")
    info = fresh.reference_info("train")
    assert not info.hit and "checksum" in (info.rebuilt_because or "")
    assert torch.equal(rebuilt, ref)  # same latents, same batches: bit-identical
    assert ReferenceCache(tmp_path).load(fresh.reference_key("train"))[0] is not None


@needs_embedded
def test_reference_key_covers_sampler_prompts_and_seeds(embedded: LoadedModel, tmp_path: Path) -> None:
    ev = Evaluator(_config(tmp_path), model=embedded)
    key = ev.reference_key("train")
    for field in ("fingerprint", "weights", "scheduler", "num_inference_steps", "prompts", "dtype", "device"):
        assert field in key
    assert key["weights"].startswith("sha256:")
    assert key != ev.reference_key("heldout")
    other_steps = Evaluator(_config(tmp_path, num_inference_steps=5), model=embedded)
    assert key_digest(other_steps.reference_key("train")) != key_digest(key)
    other_n = Evaluator(_config(tmp_path, n_train=3), model=embedded)
    assert other_n.reference_key("train")["prompts"] != key["prompts"]


@needs_embedded
def test_a_sharded_reference_equals_the_whole_one_and_is_stored_once(embedded: LoadedModel, tmp_path: Path) -> None:
    whole = Evaluator(_config(tmp_path / "a", n_train=4), model=embedded).reference("train")
    ev = Evaluator(_config(tmp_path / "b", n_train=4), model=embedded)
    assert ev.fixtures.shards("train") == [slice(0, 2), slice(2, 4)]
    builder = Evaluator(_config(tmp_path / "c", n_train=4), model=embedded)  # as on a worker
    seen: list[list[slice]] = []

    def shard(split: str, ranges: list[slice]) -> list[torch.Tensor]:
        seen.append(ranges)
        return [builder.fixtures.build_reference_shard(split, r) for r in ranges]

    merged = ev.reference("train", shard)
    assert seen == [[slice(0, 2), slice(2, 4)]] and torch.equal(merged, whole)
    files = sorted(p.name.rsplit(".", 1)[-1] for p in (tmp_path / "b" / "references").iterdir())
    assert files == ["json", "safetensors"]  # one merged entry, no partial or per-shard file, no stale lock
    again = Evaluator(_config(tmp_path / "b", n_train=4), model=embedded)
    assert torch.equal(again.reference("train"), whole) and again.reference_info("train").hit


@needs_embedded
def test_a_shard_of_the_wrong_size_is_refused_and_nothing_is_stored(embedded: LoadedModel, tmp_path: Path) -> None:
    ev = Evaluator(_config(tmp_path, n_train=4), model=embedded)
    with pytest.raises(RuntimeError, match="sharded reference"):
        ev.reference("train", lambda split, ranges: [torch.zeros(1, 3, ev.height, ev.width)] * len(ranges))
    assert not list((tmp_path / "references").glob("*.safetensors"))


@needs_embedded
def test_growing_heldout_ranges_build_each_range_once_and_stay_exact(embedded: LoadedModel, tmp_path: Path) -> None:
    import cachesearch as cs

    small = Evaluator(_config(tmp_path, n_heldout=2), model=embedded)
    first = small.reference("heldout")  # a 2-image held-out split, as a run with --n-heldout 2 caches it
    ev = Evaluator(_config(tmp_path, n_heldout=4), model=embedded)
    assert ev.reference_key("heldout", slice(0, 2)) == small.reference_key("heldout")
    assert torch.equal(ev.fixtures.reference_range("heldout", 0, 2), first)  # shared with the smaller split
    full = ev.compile(cs.Full())
    res = ev.evaluate(full, split="heldout", images=slice(2, 4))  # only images 2-3 are built, once
    assert res.valid and res.quality == 0.0 and res.losses == (0.0, 0.0)
    entries = sorted(p.stem for p in (tmp_path / "references").glob("*.safetensors"))
    assert len(entries) == 2 and "heldout" not in ev.fixtures._refs  # the 4-image split was never built
    whole = Evaluator(_config(tmp_path / "whole", n_heldout=4), model=embedded).reference("heldout")
    assert torch.equal(ev.fixtures.reference_range("heldout", 2, 4), whole[2:4])
