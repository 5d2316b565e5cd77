"""Architecture fingerprint: a hash of what the denoiser *is*, not of what it has learned."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["FINGERPRINT_PREFIX", "architecture_fingerprint", "fingerprint_mismatch"]

FINGERPRINT_PREFIX = "sha256:"

# Config keys that describe where a model came from, not its architecture.
_IGNORED_CONFIG_KEYS = frozenset({"_name_or_path", "_diffusers_version", "_use_default_values", "_class_name"})


def _normalise_param_name(name: str) -> str | None:
    # LoRA adapters (peft) add parameters and wrap the base layer; the architecture they adapt is unchanged.
    if ".lora_" in name or ".lora_magnitude_vector" in name:
        return None
    return name.replace(".base_layer.", ".")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def architecture_fingerprint(
    class_name: str, config: Mapping[str, Any], params: Iterable[tuple[str, Sequence[int]]]
) -> str:
    """Hash a denoiser's class, config and ordered parameter names + shapes.

    Weights and dtypes are deliberately excluded: a fine-tune, a fused LoRA or an fp16 copy of the same
    architecture gets the same fingerprint, so a schedule found on one applies to the others.
    """
    cfg = {k: v for k, v in config.items() if k not in _IGNORED_CONFIG_KEYS}
    h = hashlib.sha256()
    h.update(class_name.encode())
    h.update(json.dumps(_jsonable(cfg), sort_keys=True).encode())
    for name, shape in params:
        norm = _normalise_param_name(name)
        if norm is None:
            continue
        h.update(f"{norm}:{tuple(int(s) for s in shape)};".encode())
    return FINGERPRINT_PREFIX + h.hexdigest()


def fingerprint_mismatch(schedule: Any, actual_class: str, actual: str, where: str = "this denoiser") -> str | None:
    """The one message for a schedule applied to another architecture, or ``None`` when they match.

    Args:
        schedule: a :class:`~cachesearch.schedule.Schedule` (its ``name`` and ``model`` are read).
        actual_class: class name of the denoiser it meets.
        actual: that denoiser's fingerprint.
        where: how the message names the denoiser (``"this denoiser"``, ``"model 'embedded'"``).
    """
    expected = schedule.model.fingerprint
    if actual == expected:
        return None
    return (
        f"model.fingerprint: schedule {schedule.name!r} was made for a {schedule.model.cls} with fingerprint "
        f"{expected[:19]}… (source {schedule.model.source}); {where} is a {actual_class} with {actual[:19]}…, "
        f"a different architecture"
    )
