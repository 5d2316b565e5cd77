"""Errors raised by model loading."""

from __future__ import annotations

__all__ = ["ModelLoadError"]


class ModelLoadError(ValueError):
    """A model spec could not be resolved or loaded (unknown preset, bad spec, weights not cached locally...).

    The message says what was expected and how to fix it.
    """
