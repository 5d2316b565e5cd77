"""The registry of embedded models: name after ``embedded:`` -> package, and the offline folder loader they share.

Each is a package under ``cachesearch.embedded`` that provides ``load_pipeline``, ``all_captions`` (objects with
``.text()``), ``parse_caption``, ``check`` (a result with ``colors_ok``/``all_ok``), ``DEFAULT_GUIDANCE_SCALE``
and ``DEFAULT_STEPS``. Adding one is a package plus one line in :data:`EMBEDDED_PACKAGES`; the loaders, the
built-in prompt sets, the evaluator's attribute accuracy and the default guidance all read it from here.
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from .._quiet import low_cpu_mem_usage, quiet_loading

__all__ = ["DEFAULT_EMBEDDED", "EMBEDDED_PACKAGES", "embedded_name", "embedded_package", "load_folder"]

EMBEDDED_PACKAGES: dict[str, str] = {
    "shapes": "cachesearch.embedded.shapes",
    "scenes": "cachesearch.embedded.scenes",
    "shapes-flux": "cachesearch.embedded.shapes_flux",
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


def load_folder(
    pipeline_class: Any, folder: str | Path, *, device: str | torch.device, dtype: torch.dtype, progress_bar: bool,
    **kwargs: Any,
) -> Any:
    """``pipeline_class.from_pretrained(folder)`` offline (``local_files_only``), cast to ``dtype`` (weights are
    stored in float32 or float16), on ``device``, with diffusers' progress bar off unless ``progress_bar``.

    Raises:
        FileNotFoundError: the folder has no ``model_index.json``.
    """
    folder = Path(folder)
    if not (folder / "model_index.json").is_file():
        raise FileNotFoundError(f"no diffusers pipeline at {folder} (model_index.json missing)")
    # always cast: a folder may store float16 weights to stay small (``scenes``) and run in float32;
    # ``torch_dtype=`` works in every diffusers version (newer ones prefer ``dtype=`` and warn)
    kwargs["torch_dtype"] = dtype
    with warnings.catch_warnings(), quiet_loading():
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch_dtype.*")
        pipe = pipeline_class.from_pretrained(str(folder), local_files_only=True, **low_cpu_mem_usage(), **kwargs)
    pipe.set_progress_bar_config(disable=not progress_bar)
    return pipe.to(device)
