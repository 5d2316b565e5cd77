"""The mask alphabet and its checks (a leaf module: the IR and every policy family use it)."""

from __future__ import annotations

import re

from ._errors import ScheduleError, short_repr

__all__ = ["RECOMPUTE", "REUSE", "check_block_name", "check_mask"]

RECOMPUTE = "R"
REUSE = "."
_MASK_RE = re.compile(r"^[R.]+$")
_BLOCK_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")


def check_mask(path: str, mask: object, num_steps: int) -> str:
    """Validate one R/. mask string of ``num_steps`` characters whose first step recomputes."""
    if not isinstance(mask, str):
        raise ScheduleError(f"{path}: expected a string of R and . characters, got {type(mask).__name__}")
    if not _MASK_RE.match(mask):
        bad = sorted(set(mask) - {"R", "."})
        raise ScheduleError(f"{path}: only 'R' (recompute) and '.' (reuse) are allowed, found {short_repr(bad)}")
    if len(mask) != num_steps:
        raise ScheduleError(
            f"{path}: mask has {len(mask)} characters but the sampler runs {num_steps} steps; "
            f"expected one character per step"
        )
    if mask[0] != RECOMPUTE:
        raise ScheduleError(f"{path}: step 0 must be 'R' (nothing is stored yet to reuse)")
    return mask


def check_block_name(path: str, name: object) -> str:
    """Validate the syntax of a block's module path."""
    if not isinstance(name, str) or not _BLOCK_RE.match(name):
        raise ScheduleError(f"{path}: {short_repr(name)} is not a module path like 'up_blocks.1' or 'mid_block'")
    return name
