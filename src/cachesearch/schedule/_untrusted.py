"""Reading untrusted YAML: a strict ``SafeLoader`` (no duplicate keys, anchors, aliases or deep nesting) and
bounded file reads, shared by every file format of cachesearch (schedules, search spaces, front indexes)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from ._errors import ScheduleError, short_repr

__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "DuplicateKeyError",
    "UntrustedYAMLError",
    "parse_untrusted_yaml",
    "read_untrusted_text",
    "read_yaml_file",
    "strict_yaml_load",
]

MAX_FILE_BYTES = 1 << 20
"""Largest schedule or search-space file read (1 MiB; real ones are a few KB). Index files allow more."""
MAX_DEPTH = 32
"""Deepest nesting of mappings/sequences accepted (the formats need 4)."""


# -- loading ---------------------------------------------------------------------------------------------
class DuplicateKeyError(yaml.YAMLError):
    """A YAML mapping repeats a key (``yaml.safe_load`` would silently keep the last value)."""


class UntrustedYAMLError(yaml.YAMLError):
    """A YAML document uses a feature cachesearch files never need and that untrusted input can abuse:
    anchors/aliases (an alias "bomb" expands a 600-byte file into gigabytes) or excessive nesting."""


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also refuses duplicate keys, anchors, aliases and nesting beyond ``MAX_DEPTH``.

    Anchors and aliases are refused while composing, before anything is expanded, so a hostile file costs
    no more than reading it.
    """

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            raise UntrustedYAMLError(f"line {line}: aliases (*{event.anchor}) are not allowed in cachesearch files")
        if getattr(event, "anchor", None) is not None:
            raise UntrustedYAMLError(f"line {line}: anchors (&{event.anchor}) are not allowed in cachesearch files")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise UntrustedYAMLError(f"line {line}: nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise DuplicateKeyError(f"line {key_node.start_mark.line + 1}: key {short_repr(key)} appears twice")
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def strict_yaml_load(text: str, *, max_bytes: int = MAX_FILE_BYTES) -> Any:
    """Parse YAML like ``yaml.safe_load``, refusing repeated keys (:class:`DuplicateKeyError`), anchors, aliases,
    nesting deeper than :data:`MAX_DEPTH` and text over ``max_bytes`` (:class:`UntrustedYAMLError`).

    Shared by every file format of cachesearch (schedules, search spaces, front indexes)."""
    if len(text) > max_bytes:
        raise UntrustedYAMLError(f"{len(text)} characters, more than the {max_bytes} this file format allows")
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass


def read_untrusted_text(path: str | os.PathLike[str], *, what: str = "file", max_bytes: int = MAX_FILE_BYTES) -> str:
    """The text of one untrusted file: missing, too large (checked before reading) or not UTF-8 → one
    :class:`ScheduleError` that names the file."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise ScheduleError(f"{p}: no such {what}") from None
    except OSError as e:
        raise ScheduleError(f"{p}: cannot read the {what}: {e.strerror or e}") from None
    if size > max_bytes:
        raise ScheduleError(f"{p}: {size} bytes, more than the {max_bytes} a {what} may have")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ScheduleError(f"{p}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise ScheduleError(f"{p}: cannot read the {what}: {e.strerror or e}") from None


def parse_untrusted_yaml(path: str | os.PathLike[str], text: str, *, max_bytes: int = MAX_FILE_BYTES) -> Any:
    """:func:`strict_yaml_load` the text of ``path``; invalid or unsafe YAML → one :class:`ScheduleError`."""
    try:
        return strict_yaml_load(text, max_bytes=max_bytes)
    except (DuplicateKeyError, UntrustedYAMLError) as e:
        raise ScheduleError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ScheduleError(f"{path}: not valid YAML: {_first_line(e)}") from None
    except RecursionError:
        raise ScheduleError(f"{path}: nested too deeply") from None


def read_yaml_file(path: str | os.PathLike[str], *, what: str = "file", max_bytes: int = MAX_FILE_BYTES) -> Any:
    """Read and :func:`strict_yaml_load` one untrusted file; every failure is one :class:`ScheduleError` that
    names the file (missing, too large — checked before reading —, not UTF-8, not valid or unsafe YAML)."""
    text = read_untrusted_text(path, what=what, max_bytes=max_bytes)
    return parse_untrusted_yaml(Path(path), text, max_bytes=max_bytes)


def _first_line(e: Exception) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 300 else text[:299] + "…"
