"""Loading a pipeline quietly: diffusers' and transformers' loading bars (``Loading pipeline components…``,
``Loading weights``) and their warnings while loading (``Cannot initialize model with low cpu memory usage``
when accelerate is absent) are switched off for the load and restored after; errors still raise."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["low_cpu_mem_usage", "quiet_loading"]


def low_cpu_mem_usage() -> dict[str, Any]:
    """``from_pretrained`` keyword for what this environment can do: diffusers defaults to True and warns (then
    falls back) when accelerate is not installed."""
    from diffusers.utils import is_accelerate_available

    return {"low_cpu_mem_usage": bool(is_accelerate_available())}


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Within: no loading bars, only errors logged by diffusers and transformers; their settings come back after."""
    from diffusers.utils import logging as d_log
    from transformers.utils import logging as t_log

    saved = [(m, m.is_progress_bar_enabled(), m.get_verbosity()) for m in (d_log, t_log)]
    for m, _, _ in saved:
        m.disable_progress_bar()
        m.set_verbosity_error()
    try:
        yield
    finally:
        for m, bar, level in saved:
            (m.enable_progress_bar if bar else m.disable_progress_bar)()
            m.set_verbosity(level)
