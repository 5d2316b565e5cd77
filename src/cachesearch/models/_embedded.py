"""The embedded models: trained, shipped pipelines with procedural ground truth.

Each is a package under ``cachesearch.models`` that provides ``load_pipeline``, ``all_captions`` (objects with
``.text()``), ``parse_caption``, ``check`` (a result with ``colors_ok``/``all_ok``), ``DEFAULT_GUIDANCE_SCALE``
and ``DEFAULT_STEPS``. Adding one is a package plus one line in :data:`EMBEDDED_PACKAGES`; the loaders, the
built-in prompt sets, the evaluator's attribute accuracy and the default guidance all read it from here.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["DEFAULT_EMBEDDED", "EMBEDDED_PACKAGES", "embedded_name", "embedded_package"]

EMBEDDED_PACKAGES: dict[str, str] = {
    "shapes": "cachesearch.models.shapes",
    "scenes": "cachesearch.models.scenes",
    "shapes-flux": "cachesearch.models.shapes_flux",
}
"""Name after ``embedded:`` -> package."""

DEFAULT_EMBEDDED = "shapes"
"""What a bare ``embedded`` spec means."""


def embedded_name(source: str) -> str | None:
    """``"scenes"`` for ``"embedded:scenes"``, the default for ``"embedded"``, ``None`` for other sources."""
    if source == "embedded":
        return DEFAULT_EMBEDDED
    if source.startswith("embedded:") and source[len("embedded:"):] in EMBEDDED_PACKAGES:
        return source[len("embedded:"):]
    return None


def embedded_package(source: str) -> ModuleType | None:
    """The package of an embedded source (imported), or ``None`` when ``source`` is not an embedded model."""
    name = embedded_name(source)
    return None if name is None else importlib.import_module(EMBEDDED_PACKAGES[name])
