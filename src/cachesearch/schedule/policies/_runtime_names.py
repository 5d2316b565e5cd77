"""Short file-friendly names of runtime policies: the method and its main knobs (``fbcache-t0.12``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["runtime_name"]

_METHODS = {
    "FirstBlockCacheConfig": "fbcache", "MagCacheConfig": "magcache", "TaylorSeerCacheConfig": "taylorseer",
    "FasterCacheConfig": "fastercache", "PyramidAttentionBroadcastConfig": "pab", "SeaCacheConfig": "seacache",
    "TextKVCacheConfig": "textkv", "DBCacheConfig": "dbcache", "DBPruneConfig": "dbprune",
    "TaylorSeerCalibratorConfig": "ts", "FoCaCalibratorConfig": "foca", "DMDCalibratorConfig": "dmd",
}
_KNOBS = (  # (field, tag) in the order they appear in names
    ("Fn_compute_blocks", "F"), ("Bn_compute_blocks", "B"), ("threshold", "t"), ("residual_diff_threshold", "t"),
    ("max_skip_steps", "k"), ("retention_ratio", "r"), ("max_warmup_steps", "w"), ("max_cached_steps", "m"),
    ("max_continuous_cached_steps", "c"), ("cache_interval", "n"), ("max_order", "o"),
    ("spatial_attention_block_skip_range", "s"), ("taylorseer_order", "o"),
)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def runtime_name(method: str, fields: Mapping[str, Any]) -> str:
    """``fbcache-t0.12``, ``dbcache-F1B0-t0.08``: the method's short name and the knobs it sets."""
    base = _METHODS.get(method, method.removesuffix("Config").lower())
    knobs = "".join(f"{tag}{_fmt(fields[f])}" if tag in "FB" else f"-{tag}{_fmt(fields[f])}"
                    for f, tag in _KNOBS if isinstance(fields.get(f), (int, float)) and not isinstance(fields[f], bool)
                    and fields[f] != -1)  # -1: cache-dit's "no limit"
    return f"{base}-{knobs.lstrip('-')}" if knobs else base
