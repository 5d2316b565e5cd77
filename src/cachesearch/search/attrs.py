"""Names of the attributes cachesearch stores on Optuna studies and trials (a leaf module every part reads)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "ATTR_BASELINE",
    "ATTR_BASELINES",
    "ATTR_BASELINE_KIND",
    "ATTR_CONFIG",
    "ATTR_MAGCACHE",
    "ATTR_PROFILE",
    "ATTR_SPACE",
    "baseline_attrs",
]

ATTR_CONFIG = "cachesearch.config"
ATTR_SPACE = "cachesearch.space"
ATTR_PROFILE = "cachesearch.profile"
ATTR_MAGCACHE = "cachesearch.magcache"
"""MagCache's calibrated ratios of a run (``ratios``, ``loops``, ``seconds``), computed once per search."""
ATTR_BASELINES = "cachesearch.baselines"
ATTR_BASELINE = "baseline"
ATTR_BASELINE_KIND = "baseline_kind"


def baseline_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The user attributes that mark a trial as a baseline (``baseline``: its name, ``baseline_kind``: its
    family), carried over when the trial is re-enqueued."""
    return {k: attrs[k] for k in (ATTR_BASELINE, ATTR_BASELINE_KIND) if k in attrs}
