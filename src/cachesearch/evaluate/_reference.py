"""Reference cache: full-compute images stored on disk once per model, sampler, prompts and device kind.

A reference is stored as two files in ``<cache_dir>/references/``:

``<digest>.safetensors``
    one float32 tensor ``images`` [N, 3, H, W] in [0, 1] (float32 so that an all-recompute candidate can
    match it bit for bit).
``<digest>.json``
    the sidecar: format tag, the full key, the sha256 of the safetensors file and the tensor shape.

``<digest>`` is the sha256 of the canonical JSON of the key. Both files are written atomically (temp file
in the same folder, fsync, rename), the data file first. On load the sidecar must name the same key, the
data file must hash to the recorded checksum and decode to the recorded shape with finite values in
[0, 1]; anything else (a truncated file, a crash between the two renames, a foreign file) is reported and
the reference is rebuilt, never trusted. Builders of the same key in several processes on one host
serialise on a lock file, so a reference is computed once even when many workers start together.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._atomic import atomic_write, lock_file

__all__ = [
    "REFERENCE_FORMAT",
    "ReferenceCache",
    "ReferenceInfo",
    "canonical_json",
    "key_digest",
    "plain",
    "weights_hash",
]

logger = logging.getLogger(__name__)

REFERENCE_FORMAT = "cachesearch/reference@1"
_TENSOR = "images"


def plain(value: Any) -> Any:
    """Convert a config value to plain JSON data (tuples → lists, numpy/torch scalars → numbers)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return plain(value.tolist())
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    return repr(value)


def canonical_json(data: Any) -> str:
    """Stable JSON text of plain data (sorted keys, no whitespace)."""
    return json.dumps(plain(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def key_digest(key: Mapping[str, Any]) -> str:
    """sha256 hex digest of a key's canonical JSON."""
    return hashlib.sha256(canonical_json(key).encode("utf-8")).hexdigest()


def _hash_state(h: Any, prefix: str, module: torch.nn.Module) -> None:
    for name, tensor in module.state_dict(keep_vars=False).items():
        t = tensor.detach()
        h.update(f"{prefix}.{name}:{str(t.dtype)}:{tuple(t.shape)};".encode())
        if t.device.type == "meta":
            raise ValueError(f"{prefix}.{name} is on the meta device; a model with unallocated weights has no outputs")
        t = t.to("cpu").contiguous()
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        h.update(t.numpy().tobytes() if t.numel() else b"")


def weights_hash(pipe: Any) -> str:
    """``"sha256:..."`` over every weight tensor of the pipeline's modules and its tokenizers' vocabularies.

    Components are hashed in the sorted order of their attribute names (``text_encoder``, ``vae``, ...); each
    tensor contributes its name, dtype, shape and bytes. Fast enough for any model that can be evaluated (about 1 GB/s).
    """
    h = hashlib.sha256()
    components = getattr(pipe, "components", None)
    if not isinstance(components, Mapping):
        raise TypeError(f"expected a diffusers pipeline with `components`, got {type(pipe).__name__}")
    for name in sorted(components):
        part = components[name]
        if isinstance(part, torch.nn.Module):
            _hash_state(h, name, part)
        elif part is not None and hasattr(part, "get_vocab"):
            h.update(f"{name}:{type(part).__name__}:".encode())
            h.update(canonical_json(part.get_vocab()).encode("utf-8"))
    return "sha256:" + h.hexdigest()


@dataclass(frozen=True, kw_only=True)
class ReferenceInfo:
    """Where a reference came from.

    Attributes:
        path: the safetensors file.
        digest: sha256 of the key.
        hit: ``True`` when the images were read from disk, ``False`` when they were computed.
        rebuilt_because: why a file on disk was not used (``None`` for a plain miss or a hit).
    """

    path: Path
    digest: str
    hit: bool
    rebuilt_because: str | None = None


class ReferenceCache:
    """Full-compute reference images on disk, keyed by everything that determines them (module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser() / "references"

    def paths(self, key: Mapping[str, Any]) -> tuple[Path, Path]:
        """``(data file, sidecar)`` for ``key``."""
        d = key_digest(key)
        return self.root / f"{d}.safetensors", self.root / f"{d}.json"

    def load(self, key: Mapping[str, Any]) -> tuple[torch.Tensor | None, str | None]:
        """Read and verify the reference of ``key``; returns ``(images, None)`` or ``(None, why not)``."""
        data_path, meta_path = self.paths(key)
        if not meta_path.exists() and not data_path.exists():
            return None, None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None, f"sidecar {meta_path.name} is missing (interrupted write)"
        except (OSError, ValueError) as e:
            return None, f"sidecar {meta_path.name} is unreadable ({e})"
        if not isinstance(meta, dict) or meta.get("format") != REFERENCE_FORMAT:
            return None, f"sidecar {meta_path.name} has an unknown format (expected {REFERENCE_FORMAT})"
        if canonical_json(meta.get("key")) != canonical_json(key):
            return None, f"sidecar {meta_path.name} was written for a different key"
        try:
            blob = data_path.read_bytes()
        except OSError as e:
            return None, f"data file {data_path.name} is unreadable ({e})"
        digest = hashlib.sha256(blob).hexdigest()
        if digest != meta.get("sha256"):
            return None, f"data file {data_path.name} fails its checksum (truncated or modified)"
        try:
            from safetensors.torch import load as st_load

            images = st_load(blob)[_TENSOR]
        except Exception as e:  # noqa: BLE001 - any decode failure means the file cannot be trusted
            return None, f"data file {data_path.name} does not decode ({type(e).__name__}: {e})"
        if list(images.shape) != meta.get("shape") or images.dtype != torch.float32:
            return None, f"data file {data_path.name} holds {tuple(images.shape)} {images.dtype}, not what was recorded"
        if not bool(torch.isfinite(images).all()) or float(images.min()) < 0 or float(images.max()) > 1:
            return None, f"data file {data_path.name} holds values outside [0, 1]"
        return images, None

    def store(self, key: Mapping[str, Any], images: torch.Tensor) -> Path:
        """Write ``images`` (float32 [N, 3, H, W], or videos [N, F, 3, H, W], in [0, 1]) for ``key`` atomically;
        returns the data path."""
        from safetensors.torch import save as st_save

        if images.dtype != torch.float32 or images.ndim not in (4, 5):
            raise ValueError(f"reference images must be float32 NCHW (videos NFCHW), got {images.dtype} "
                             f"{tuple(images.shape)}")
        data_path, meta_path = self.paths(key)
        self.root.mkdir(parents=True, exist_ok=True)
        blob = st_save({_TENSOR: images.detach().to("cpu").contiguous()}, metadata={"format": REFERENCE_FORMAT})
        meta = {
            "format": REFERENCE_FORMAT,
            "key": plain(key),
            "digest": key_digest(key),
            "sha256": hashlib.sha256(blob).hexdigest(),
            "shape": list(images.shape),
        }
        atomic_write(data_path, blob)
        atomic_write(meta_path, (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode("utf-8"))
        return data_path

    def get_or_build(
        self, key: Mapping[str, Any], build: Callable[[], torch.Tensor]
    ) -> tuple[torch.Tensor, ReferenceInfo]:
        """Load the reference of ``key``, or compute it with ``build()`` and store it (once per host)."""
        data_path, _ = self.paths(key)
        digest = key_digest(key)
        images, why = self.load(key)
        if images is not None:
            return images, ReferenceInfo(path=data_path, digest=digest, hit=True)
        self.root.mkdir(parents=True, exist_ok=True)
        with lock_file(self.root / f"{digest}.lock"):
            images, why_locked = self.load(key)  # another process may have built it meanwhile
            if images is not None:
                return images, ReferenceInfo(path=data_path, digest=digest, hit=True)
            why = why or why_locked
            if why:
                logger.warning("reference %s not usable: %s; rebuilding it", data_path, why)
            images = build()
            self.store(key, images)
        return images, ReferenceInfo(path=data_path, digest=digest, hit=False, rebuilt_because=why)
