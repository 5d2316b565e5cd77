"""The applier's step × block action table: what each hooked block does at each step (a tuple lookup per call)."""

from __future__ import annotations

from collections.abc import Sequence

from ..schedule import BlockEntry

__all__ = ["REUSE", "RUN", "STORE", "action_rows"]

RUN, STORE, REUSE = 0, 1, 2


def _actions(mask: str, every_recompute: bool = False) -> list[int]:
    """RUN, STORE or REUSE per step. A recompute stores when the next step reuses; with ``every_recompute``
    (Taylor forecasts difference the recomputes) whenever any later step reuses."""
    out = []
    last_reuse = mask.rfind(".")
    for s, ch in enumerate(mask):
        if ch == ".":
            out.append(REUSE)
        elif (s < last_reuse) if every_recompute else (s + 1 < len(mask) and mask[s + 1] == "."):
            out.append(STORE)
        else:
            out.append(RUN)
    return out


def _merge(a_uncond: int, a_cond: int) -> int | tuple[int, int]:
    if a_uncond == a_cond:
        return a_uncond
    if REUSE not in (a_uncond, a_cond):
        return STORE  # both run; one of them needs the output later
    return (a_uncond, a_cond)


def action_rows(
    blocks: Sequence[BlockEntry], num_steps: int, first_row: int, mode: str, *, store_every_recompute: bool = False
) -> list[tuple]:
    """Action rows of a run that starts at ``first_row``: that row recomputes every block (nothing is stored
    yet), the rows after it follow the masks. ``mode``: ``"cond"`` or ``"uncond"`` (that branch's masks, one
    branch per call) or ``"cfg"`` (a row merges the uncond and cond halves' actions of a ``[uncond; cond]``
    batch). ``store_every_recompute``: every recompute before a block's last reuse stores (``reuse: taylor``)."""
    if mode not in ("cond", "uncond", "cfg"):
        raise ValueError(f"mode: expected 'cond', 'uncond' or 'cfg', got {mode!r}")

    def forced(mask: str) -> list[int]:
        return _actions(mask[:first_row] + "R" + mask[first_row + 1 :], store_every_recompute)

    cond = [forced(bm.cond) for bm in blocks]
    uncond = [forced(bm.uncond) for bm in blocks]
    if mode == "cfg":
        return [tuple(_merge(u[s], c[s]) for u, c in zip(uncond, cond)) for s in range(num_steps)]
    return [tuple(c[s] for c in (cond if mode == "cond" else uncond)) for s in range(num_steps)]
