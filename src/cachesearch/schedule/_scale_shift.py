"""Per-(block, step, channel) scale and shift applied to reused outputs (Block Caching's adjustment).

Held as read-only numpy arrays so the schedule stays a plain, immutable value; stored beside a schedule file
as a safetensors sidecar (``safetensors.numpy``: no torch here).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from types import MappingProxyType

import numpy as np

from ._errors import ScheduleError, short_repr

__all__ = ["ScaleShift"]

_SEP = "/"


def _readonly(a: object, path: str) -> np.ndarray:
    try:
        arr = np.array(a, dtype=np.float32, copy=True)
    except (TypeError, ValueError) as e:
        raise ScheduleError(f"{path}: expected a 1-D array of numbers ({e})") from e
    if arr.ndim != 1 or arr.size == 0:
        raise ScheduleError(f"{path}: expected a non-empty 1-D array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ScheduleError(f"{path}: expected finite values")
    arr.flags.writeable = False
    return arr


def _is_key(k: object) -> bool:
    return (isinstance(k, tuple) and len(k) == 2 and isinstance(k[0], str) and bool(k[0])
            and not isinstance(k[1], bool) and isinstance(k[1], int) and k[1] >= 0)


class ScaleShift:
    """Immutable mapping ``(block, step) → (scale, shift)``: 1-D float32 arrays over the block output's channels.

    A reused output ``y`` of ``block`` at ``step`` becomes ``scale[c] * y + shift[c]`` (channel ``c`` is the
    dimension the block's I/O contract names: dim 1 of the UNet's 4-D outputs). Equality is by content.
    """

    __slots__ = ("_digest", "_entries")

    def __init__(self, entries: Mapping[tuple[str, int], tuple[object, object]]) -> None:
        if not isinstance(entries, Mapping) or not entries:
            raise ScheduleError("scale_shift: expected at least one (block, step) entry")
        table: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        for key in sorted(entries, key=lambda k: repr(k[0]) + f"/{k[1]:08d}" if _is_key(k) else ""):
            if not _is_key(key):
                raise ScheduleError(f"scale_shift: keys must be (block name, step >= 0), got {short_repr(key)}")
            value = entries[key]
            if not isinstance(value, tuple) or len(value) != 2:
                raise ScheduleError(f"scale_shift[{key[0]!r}, {key[1]}]: expected a (scale, shift) pair")
            scale = _readonly(value[0], f"scale_shift[{key[0]!r}, {key[1]}].scale")
            shift = _readonly(value[1], f"scale_shift[{key[0]!r}, {key[1]}].shift")
            if scale.shape != shift.shape:
                raise ScheduleError(
                    f"scale_shift[{key[0]!r}, {key[1]}]: scale has {scale.size} channels, shift {shift.size}"
                )
            table[key] = (scale, shift)
        self._entries = MappingProxyType(table)
        self._digest: str | None = None

    # -- mapping view -------------------------------------------------------------------------------------
    @property
    def entries(self) -> Mapping[tuple[str, int], tuple[np.ndarray, np.ndarray]]:
        """Read-only ``(block, step) → (scale, shift)``, sorted by block then step."""
        return self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return iter(self._entries)

    def __getitem__(self, key: tuple[str, int]) -> tuple[np.ndarray, np.ndarray]:
        return self._entries[key]

    def blocks(self) -> tuple[str, ...]:
        """Blocks with at least one entry (sorted)."""
        return tuple(sorted({b for b, _ in self._entries}))

    def __setattr__(self, name: str, value: object) -> None:
        if (name in self.__slots__ and not hasattr(self, name)) or name == "_digest":
            object.__setattr__(self, name, value)
        else:
            raise AttributeError("ScaleShift is immutable")

    # -- bytes ------------------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Safetensors bytes (keys ``"<block>/<step>/scale"`` and ``".../shift"``); stable for equal content."""
        from safetensors.numpy import save

        tensors = {}
        for (block, step), (scale, shift) in self._entries.items():
            tensors[f"{block}{_SEP}{step}{_SEP}scale"] = np.ascontiguousarray(scale)
            tensors[f"{block}{_SEP}{step}{_SEP}shift"] = np.ascontiguousarray(shift)
        return save(tensors, metadata={"format": "cachesearch/scale_shift@1"})

    @property
    def sha256(self) -> str:
        """Hex sha256 of :meth:`to_bytes` (what a schedule file records for its sidecar)."""
        if self._digest is None:
            self._digest = hashlib.sha256(self.to_bytes()).hexdigest()
        return self._digest

    @classmethod
    def from_bytes(cls, data: bytes, *, path: str = "scale_shift.file") -> ScaleShift:
        """Parse safetensors bytes written by :meth:`to_bytes` (raises :class:`ScheduleError` naming ``path``)."""
        from safetensors.numpy import load

        try:
            tensors = load(data)
        except Exception as e:  # safetensors raises its own error types (SafetensorError, ValueError, ...)
            raise ScheduleError(f"{path}: not a safetensors file ({type(e).__name__}: {e})") from e
        pairs: dict[tuple[str, int], dict[str, np.ndarray]] = {}
        for key, arr in tensors.items():
            parts = key.rsplit(_SEP, 2)
            if len(parts) != 3 or parts[2] not in ("scale", "shift") or not parts[1].isdigit():
                raise ScheduleError(f"{path}: unexpected tensor {short_repr(key)}; expected '<block>/<step>/scale'")
            pairs.setdefault((parts[0], int(parts[1])), {})[parts[2]] = arr
        entries = {}
        for k, v in pairs.items():
            if set(v) != {"scale", "shift"}:
                raise ScheduleError(f"{path}: {k[0]!r} step {k[1]} has {sorted(v)} but needs scale and shift")
            entries[k] = (v["scale"], v["shift"])
        return cls(entries)

    # -- value semantics ----------------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ScaleShift):
            return NotImplemented
        return self.sha256 == other.sha256

    def __hash__(self) -> int:
        return hash(self.sha256)

    def __repr__(self) -> str:
        return f"ScaleShift({len(self)} entries over {len(self.blocks())} blocks, sha256={self.sha256[:12]}…)"
