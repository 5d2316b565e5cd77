"""Read and write ``cachesearch/schedule@1`` to ``@4`` files: strict on input, stable on output.

The untrusted-YAML reader they share with the other file formats lives in :mod:`._untrusted` (re-exported here).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .._atomic import atomic_write
from ._errors import ScheduleError, short_repr
from ._fields import _int, _mapping, _num, _str
from ._ir import (
    FORMAT,
    FORMAT_V1,
    FORMAT_V2,
    FORMAT_V3,
    FORMAT_V4,
    FORMATS,
    BlockEntry,
    ModelInfo,
    Provenance,
    ReferenceRun,
    ReuseMode,
    SamplerInfo,
    Schedule,
)
from ._scale_shift import ScaleShift
from ._untrusted import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    DuplicateKeyError,
    UntrustedYAMLError,
    parse_untrusted_yaml,
    read_untrusted_text,
    read_yaml_file,
    strict_yaml_load,
)
from ._yaml_metrics import dump_metrics, parse_metrics
from ._yaml_runtime import parse_runtime, runtime_lines
from .policies import RuntimePolicy, policy_class, policy_format, policy_from_dict

__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "DuplicateKeyError",
    "UntrustedYAMLError",
    "dump_schedule",
    "load_schedule",
    "parse_schedule",
    "parse_untrusted_yaml",
    "read_untrusted_text",
    "read_yaml_file",
    "save_schedule",
    "sidecar_name",
    "strict_yaml_load",
]

MAX_SIDECAR_BYTES = 256 << 20
"""Largest scale-shift sidecar read (256 MiB; SD 1.5 attention layers × 50 steps need a few MB)."""
SIDECAR_SUFFIX = ".scale_shift.safetensors"
"""A schedule ``s.yaml`` keeps its scale-shift in ``s.scale_shift.safetensors`` beside it."""
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _parse_model(d: Any) -> ModelInfo:
    m = _mapping("model", d, {"family", "class", "fingerprint", "source"})
    fp = _str("model.fingerprint", m["fingerprint"])
    if not fp.startswith("sha256:") or len(fp) != len("sha256:") + 64:
        raise ScheduleError(f"model.fingerprint: expected 'sha256:' + 64 hex digits, got {short_repr(fp)}")
    return ModelInfo(
        family=_str("model.family", m["family"]),
        cls=_str("model.class", m["class"]),
        fingerprint=fp,
        source=_str("model.source", m["source"]),
    )


def _parse_sampler(d: Any) -> SamplerInfo:
    s = _mapping("sampler", d, {"scheduler", "num_inference_steps"}, {"timesteps", "guidance_scale"})
    ts = s.get("timesteps")
    if ts is not None:
        if not isinstance(ts, list) or not ts:
            raise ScheduleError("sampler.timesteps: expected null or a non-empty list of integers")
        ts = tuple(_int(f"sampler.timesteps[{i}]", t, lo=0) for i, t in enumerate(ts))
    return SamplerInfo(
        scheduler=_str("sampler.scheduler", s["scheduler"]),
        num_inference_steps=_int("sampler.num_inference_steps", s["num_inference_steps"], lo=1),
        timesteps=ts,
        guidance_scale=_num("sampler.guidance_scale", s.get("guidance_scale"), lo=0.0),
    )


def _parse_blocks(d: Any) -> tuple[BlockEntry, ...]:
    if not isinstance(d, Mapping) or not d:
        raise ScheduleError('blocks: expected a mapping of block name → mask string, e.g. {mid_block: "R.R."}')
    out = []
    for name, value in d.items():
        path = f"blocks[{short_repr(name, 60)}]" if not isinstance(name, str) or len(name) > 60 else f'blocks["{name}"]'
        if not isinstance(name, str):
            raise ScheduleError(f"{path}: block names must be strings")
        if isinstance(value, Mapping):
            v = _mapping(path, value, {"cond", "uncond"})
            out.append(BlockEntry(block=name, cond=v["cond"], uncond=v["uncond"]))
        elif isinstance(value, str):
            out.append(BlockEntry(block=name, cond=value, uncond=value))
        else:
            raise ScheduleError(
                f'{path}: expected a mask string like "R..R.." or {{cond: ..., uncond: ...}}, got {short_repr(value)}'
            )
    return tuple(out)


def _parse_policy(d: Any) -> dict[str, Any]:
    if not isinstance(d, Mapping) or not isinstance(d.get("kind"), str):
        raise ScheduleError("policy: expected a mapping with a string 'kind' (how the mask was made)")
    policy_from_dict(d)  # validates kind-specific keys and values
    return dict(d)


def _parse_provenance(d: Any, fmt: str) -> Provenance | None:
    if d is None:
        return None
    optional = {"study", "trial", "prompts", "git"} | ({"note"} if fmt != FORMAT_V1 else set())
    p = _mapping("provenance", d, {"cachesearch", "created"}, optional)
    created = p["created"]
    if isinstance(created, _dt.datetime):  # an unquoted ISO timestamp is parsed by YAML; keep it as text
        created = created.isoformat().replace("+00:00", "Z")
    return Provenance(
        cachesearch=_str("provenance.cachesearch", p["cachesearch"]),
        created=_str("provenance.created", created),
        study=_str("provenance.study", p.get("study"), nullable=True),
        trial=_int("provenance.trial", p.get("trial"), nullable=True, lo=0),
        prompts=_str("provenance.prompts", p.get("prompts"), nullable=True),
        git=_str("provenance.git", p.get("git"), nullable=True),
        note=_str("provenance.note", p.get("note"), nullable=True),
    )


def _parse_reference(d: Any) -> ReferenceRun | None:
    if d is None:
        return None
    r = _mapping("reference", d, {"scheduler", "num_inference_steps"}, {"guidance_scale"})
    return ReferenceRun(
        scheduler=_str("reference.scheduler", r["scheduler"]),
        num_inference_steps=_int("reference.num_inference_steps", r["num_inference_steps"], lo=1),
        guidance_scale=_num("reference.guidance_scale", r.get("guidance_scale"), lo=0),
    )


_TOP_REQUIRED = {"format", "name", "model", "sampler", "reuse", "blocks", "policy"}
def _parse_scale_shift(d: Any, base_dir: Path | None) -> ScaleShift | None:
    """Read the sidecar named by ``scale_shift: {file, sha256}``, relative to the schedule file's folder."""
    if d is None:
        return None
    m = _mapping("scale_shift", d, {"file", "sha256"})
    name = _str("scale_shift.file", m["file"])
    digest = _str("scale_shift.sha256", m["sha256"])
    if not _HEX64.fullmatch(digest):
        raise ScheduleError(f"scale_shift.sha256: expected 64 lower-case hex digits, got {short_repr(digest)}")
    rel = Path(name)
    if rel.is_absolute() or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in rel.parts:
        raise ScheduleError(
            f"scale_shift.file: {short_repr(name)} must be a path relative to the schedule file's folder, inside it"
        )
    if base_dir is None:
        raise ScheduleError("scale_shift.file: a schedule with a sidecar must be read from a file (load_schedule)")
    base = base_dir.resolve()
    target = (base / rel).resolve()
    if target == base or base not in target.parents:
        raise ScheduleError(f"scale_shift.file: {short_repr(name)} leaves the schedule file's folder")
    try:
        size = target.stat().st_size
    except FileNotFoundError:
        raise ScheduleError(f"scale_shift.file: the sidecar {name} is missing (expected at {target})") from None
    except OSError as e:
        raise ScheduleError(f"scale_shift.file: cannot read the sidecar {name}: {e.strerror or e}") from None
    if not target.is_file():
        raise ScheduleError(f"scale_shift.file: {name} is not a regular file")
    if size > MAX_SIDECAR_BYTES:
        raise ScheduleError(f"scale_shift.file: {size} bytes, more than the {MAX_SIDECAR_BYTES} a sidecar may have")
    data = target.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise ScheduleError(
            f"scale_shift.sha256: the sidecar {name} has sha256 {actual}, the schedule names {digest} "
            f"(the sidecar was replaced or edited)"
        )
    return ScaleShift.from_bytes(data, path="scale_shift.file")


_TOP_OPTIONAL = {
    FORMAT_V1: {"metrics", "provenance"},
    FORMAT_V2: {"metrics", "provenance", "reference", "scale_shift"},
    FORMAT_V3: {"metrics", "provenance", "reference", "scale_shift", "taylor_order"},
    FORMAT_V4: {"metrics", "provenance", "reference", "scale_shift", "taylor_order", "taylor_guard"},
}
_REUSE = {  # the reuse modes each format version knows
    FORMAT_V1: (ReuseMode.OUTPUT.value, ReuseMode.RESIDUAL.value),
    FORMAT_V2: (ReuseMode.OUTPUT.value, ReuseMode.RESIDUAL.value),
    FORMAT_V3: tuple(m.value for m in ReuseMode),
    FORMAT_V4: tuple(m.value for m in ReuseMode),
}


def _parse_runtime_schedule(data: Mapping[str, Any]) -> Schedule:
    """A runtime schedule (format @4): ``runtime`` instead of ``reuse`` and ``blocks``."""
    d = _mapping("<top level>", data, {"format", "name", "model", "sampler", "runtime", "policy"},
                 {"metrics", "provenance", "reference"})
    policy = _parse_policy(d["policy"])
    if not issubclass(policy_class(policy["kind"]), RuntimePolicy):
        raise ScheduleError(f"policy.kind: a runtime schedule's policy is a runtime policy (diffusers, cachedit), "
                            f"got {policy['kind']!r}")
    return Schedule(
        name=_str("name", d["name"]),
        model=_parse_model(d["model"]),
        sampler=_parse_sampler(d["sampler"]),
        runtime=parse_runtime(d["runtime"]),
        policy=policy,
        metrics=parse_metrics(d.get("metrics"), tail=True),
        provenance=_parse_provenance(d.get("provenance"), FORMAT_V4),
        reference=_parse_reference(d.get("reference")),
    )


def _parse_guard(d: Mapping[str, Any], reuse: ReuseMode) -> bool:
    if "taylor_guard" not in d:
        return False
    guard = d["taylor_guard"]
    if not isinstance(guard, bool):
        raise ScheduleError(f"taylor_guard: expected true or false, got {short_repr(guard)}")
    if guard and reuse is not ReuseMode.TAYLOR:
        raise ScheduleError(f"taylor_guard: only allowed with reuse: taylor, not reuse: {reuse.value}")
    return guard


def _parse_reuse(d: Mapping[str, Any], fmt: str) -> tuple[ReuseMode, int | None]:
    reuse = d["reuse"]
    if reuse not in _REUSE[fmt]:
        later = ReuseMode.TAYLOR.value if reuse == ReuseMode.TAYLOR.value else None
        raise ScheduleError(
            f"reuse: expected one of {list(_REUSE[fmt])}, got {short_repr(reuse)}"
            + (f"; reuse: {later} needs format: {FORMAT_V3}" if later else "")
        )
    mode = ReuseMode(reuse)
    if "taylor_order" in d:
        if mode is not ReuseMode.TAYLOR:
            raise ScheduleError(f"taylor_order: only allowed with reuse: taylor, not reuse: {mode.value}")
        return mode, _int("taylor_order", d["taylor_order"], lo=1)
    if mode is ReuseMode.TAYLOR:
        raise ScheduleError("taylor_order: missing; reuse: taylor needs the forecast's order (1 or 2)")
    return mode, None


def parse_schedule(data: Any, *, base_dir: str | os.PathLike[str] | None = None) -> Schedule:
    """Validate a parsed YAML document and build a :class:`Schedule` (raises :class:`ScheduleError`).

    ``base_dir`` is the folder the document's ``scale_shift.file`` is relative to (the schedule file's folder).
    """
    if not isinstance(data, Mapping):
        raise ScheduleError(f"the document must be a mapping starting with 'format: {FORMAT}'")
    fmt = data.get("format")
    if fmt not in FORMATS:
        newer = isinstance(fmt, str) and fmt.startswith("cachesearch/schedule@")
        raise ScheduleError(
            f"format: expected one of {list(FORMATS)}, got {short_repr(fmt)}"
            + ("; this file needs a newer cachesearch" if newer else "")
        )
    if fmt == FORMAT_V4 and "runtime" in data:
        return _parse_runtime_schedule(data)
    if "runtime" in data and fmt != FORMAT_V4:
        raise ScheduleError(f"runtime: runtime schedules need format: {FORMAT_V4}")
    d = _mapping("<top level>", data, _TOP_REQUIRED, _TOP_OPTIONAL[fmt])
    reuse, taylor_order = _parse_reuse(d, fmt)
    policy = _parse_policy(d["policy"])
    need = policy_format(policy)
    if need > FORMATS.index(fmt) + 1:
        raise ScheduleError(f"policy.kind: {short_repr(policy['kind'])} schedules need format: {FORMATS[need - 1]}")
    if issubclass(policy_class(policy["kind"]), RuntimePolicy):
        raise ScheduleError(f"policy.kind: {policy['kind']!r} is carried out by a library at run time: its schedule "
                            f"has a 'runtime' section (format: {FORMAT_V4}), not reuse and blocks")
    return Schedule(
        name=_str("name", d["name"]),
        model=_parse_model(d["model"]),
        sampler=_parse_sampler(d["sampler"]),
        reuse=reuse,
        taylor_order=taylor_order,
        taylor_guard=_parse_guard(d, reuse),
        blocks=_parse_blocks(d["blocks"]),
        policy=policy,
        metrics=parse_metrics(d.get("metrics"), tail=fmt == FORMAT_V4),
        provenance=_parse_provenance(d.get("provenance"), fmt),
        reference=_parse_reference(d.get("reference")),
        scale_shift=_parse_scale_shift(d.get("scale_shift"), None if base_dir is None else Path(base_dir)),
    )


def load_schedule(path: str | os.PathLike[str]) -> Schedule:
    """Load and strictly validate a schedule YAML file (untrusted input: bounded size and depth, no aliases)."""
    p = Path(path)
    data = read_yaml_file(p, what="schedule file")
    try:
        return parse_schedule(data, base_dir=p.parent)
    except ScheduleError as e:
        raise ScheduleError(f"{p}: {e}") from e


# -- dumping ---------------------------------------------------------------------------------------------
class _Quoted(str):
    """A string always written in double quotes (masks: a leading '.' or '...' must never look like YAML)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Quoted, lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", str(v), style='"'))


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _flow(value: dict[str, Any]) -> str:
    """One-line flow mapping ``{a: 1, b: x}`` with keys in the given order."""
    return yaml.dump(value, Dumper=_Dumper, default_flow_style=True, sort_keys=False, width=1 << 16).strip()


def sidecar_name(path: str | os.PathLike[str]) -> str:
    """File name of the scale-shift sidecar of a schedule written to ``path`` (``s.yaml`` →
    ``s.scale_shift.safetensors``)."""
    return Path(path).stem + SIDECAR_SUFFIX


def dump_schedule(schedule: Schedule, *, sidecar: str | None = None) -> str:
    """Serialise a schedule; the output is byte-stable for equal schedules (blocks in stored order).

    ``sidecar`` is the file name recorded for a scale-shift (default ``<name>.scale_shift.safetensors``);
    :func:`save_schedule` passes the one it writes."""
    s = schedule
    lines = [f"format: {s.format}", _block_scalar("name", s.name)]
    model = {"family": s.model.family, "class": s.model.cls, "fingerprint": s.model.fingerprint,
             "source": s.model.source}
    lines.append("model: " + _flow(model))
    sampler = {
        "scheduler": s.sampler.scheduler,
        "num_inference_steps": s.sampler.num_inference_steps,
        "timesteps": list(s.sampler.timesteps) if s.sampler.timesteps is not None else None,
        "guidance_scale": s.sampler.guidance_scale,
    }
    lines.append("sampler: " + _flow(sampler))
    if s.reference is not None:
        lines.append("reference: " + _flow(_drop_none(s.reference.__dict__.copy())))
    if s.runtime is not None:
        lines += runtime_lines(s.runtime, _flow)
    else:
        lines += _mask_lines(s)
    lines.append("policy: " + _flow(dict(s.policy)))
    if s.metrics is not None:
        lines += dump_metrics(s.metrics, _flow)
    if s.provenance is not None:
        lines.append("provenance: " + _flow(_drop_none(s.provenance.__dict__.copy())))
    if s.scale_shift is not None:
        file = sidecar if sidecar is not None else sidecar_name(s.name + ".yaml")
        lines.append("scale_shift: " + _flow({"file": file, "sha256": s.scale_shift.sha256}))
    return "\n".join(lines) + "\n"


def _mask_lines(s: Schedule) -> list[str]:
    lines: list[str] = []
    lines.append(f"reuse: {s.reuse.value}")
    if s.taylor_order is not None:
        lines.append(f"taylor_order: {s.taylor_order}")
    if s.taylor_guard:
        lines.append("taylor_guard: true")
    lines.append("blocks:")
    width = max(len(bm.block) for bm in s.blocks) + 1
    for bm in s.blocks:
        key = f"{bm.block}:".ljust(width)
        if bm.shared:
            lines.append(f'  {key} "{bm.cond}"')
        else:
            lines.append(f"  {bm.block}:")
            lines.append(f'    cond:   "{bm.cond}"')
            lines.append(f'    uncond: "{bm.uncond}"')
    return lines


def _block_scalar(key: str, value: str) -> str:
    return yaml.dump({key: value}, Dumper=_Dumper, default_flow_style=False, width=1 << 16).rstrip("\n")


def save_schedule(schedule: Schedule, path: str | os.PathLike[str]) -> Path:
    """Write atomically: a crash never leaves a partial file behind."""
    p = Path(path)
    if schedule.scale_shift is None:
        text = dump_schedule(schedule)
        parse_schedule(strict_yaml_load(text))  # never write what we cannot read
        return atomic_write(p, text)
    name = sidecar_name(p)
    text = dump_schedule(schedule, sidecar=name)
    atomic_write(p.parent / name, schedule.scale_shift.to_bytes())  # the sidecar first: never a dangling name
    parse_schedule(strict_yaml_load(text), base_dir=p.parent)  # never write what we cannot read
    return atomic_write(p, text)
