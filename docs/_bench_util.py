"""Shared helpers of docs/gen_benchmarks.py and its section modules: result files, number and table formatting,
provenance lines."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def load(name: str) -> dict[str, Any]:
    """A result file under benchmarks/results/."""
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def bench_module(name: str) -> Any:
    """Import ``benchmarks/<name>.py`` (for its own table renderer)."""
    for path in (str(ROOT), str(ROOT / "benchmarks")):  # modules import siblings as `benchmarks.x` or `x`
        if path not in sys.path:
            sys.path.insert(0, path)
    return importlib.import_module(name)


def f(value: Any, spec: str = ".4f") -> str:
    """A number formatted with ``spec``; '–' for a missing one."""
    return "–" if value is None else format(value, spec)


def md(head: list[str], rows: list[list[str]], right: int = 1) -> str:
    """A markdown table; columns from ``right`` on are right-aligned."""
    sep = ["---" if i < right else "---:" for i in range(len(head))]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(sep) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def env_line(env: dict[str, Any] | None, *, extra: str = "") -> str:
    """One provenance line: date, device, torch and diffusers versions, threads."""
    if not env:
        return f"*{extra}*" if extra else ""
    bits = [str(env.get("date", ""))[:10], env.get("device"), f"torch {env.get('torch')}",
            f"diffusers {env.get('diffusers')}" if env.get("diffusers") else None]
    return "*" + ", ".join(b for b in bits if b) + (f"; {extra}" if extra else "") + "*"
