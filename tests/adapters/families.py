"""The coverage table of diffusers' transformer classes, generated from the code: ``docs/families.md``.

Every transformer class the installed diffusers exports (the classes of ``diffusers.models.transformers`` that
``diffusers`` exports at top level) is either covered — it has a tiny configuration in :mod:`tests.adapters._zoo`
and passes ``tests/adapters/test_coverage.py`` — or left out here with the reason. :data:`ORACLES` names the
diffusers hooks ``tests/adapters/test_oracles.py`` proves cachesearch equal to on each class. The table's columns
come from the adapter run on the tiny model: its family, block lists and component kinds.

Rewrite the table with ``python -m tests.adapters.families``; ``tests/adapters/test_families_table.py`` fails when
it is stale or when a class is neither covered nor left out.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import diffusers
import diffusers.models.transformers as transformers

from cachesearch.adapters import adapter_for, block_lists_of, example_for
from cachesearch.schedule import BlockKind
from tests.adapters._zoo import TINY, build

__all__ = ["LEFT_OUT", "NO_MACS", "ORACLES", "TABLE", "exported", "main", "render"]

TABLE = Path(__file__).resolve().parents[2] / "docs" / "families.md"

_AUDIO = "an audio model, not an image or video denoiser"
LEFT_OUT: dict[str, str] = {
    "AceStepTransformer1DModel": _AUDIO,
    "LongCatAudioDiTTransformer": _AUDIO,
    "MiniMaxMusic3Transformer1DModel": _AUDIO,
    "MiniMaxMusic3RVQDepthDecoder": "an audio-token decoder, not a denoiser",
    "StableAudioDiTModel": _AUDIO,
    "StableAudio3DiTModel": _AUDIO,
    "T5FilmDecoder": "a spectrogram diffusion decoder for music, not an image or video denoiser",
    "RFD4ProteinaTransformer": "a protein structure model, not an image or video denoiser",
    "PriorTransformer": "denoises CLIP image embeddings (unCLIP / Shap-E priors), not images",
    "TransformerTemporalModel": "the temporal layer of UNet3D / I2VGen-XL UNets, not a denoiser of its own",
    "DreamLiteTransformer2DModel": "the attention layer of DreamLite's UNet, not a denoiser of its own",
    "WanAnimate2Transformer3DModel": "not yet: its pipeline runs a KV-cache prefill call (`kv_cache_mode='extract'`) "
                                     "per clip segment beside the per-step calls, which step accounting does not model",
    "SanaWMLTX2RefinerTransformer3DModel": "not yet: its pipeline runs KV-cache capture calls "
                                           "(`kv_cache_mode='capture_pre_rope'`) beside the per-step calls, which step "
                                           "accounting does not model",
}
"""Exported transformer classes without a tiny configuration here, and why."""

NO_MACS: dict[str, str] = {
    "AnyFlowFARTransformer3DModel": "flex attention, which torch's FlopCounterMode cannot trace",
    "Kandinsky6SRTransformer3DModel": "flex attention, which torch's FlopCounterMode cannot trace",
    "BriaFibo2Transformer2DModel": "its forward fails under torch's FlopCounterMode (an autograd assertion)",
}
"""Covered classes whose MACs torch's ``FlopCounterMode`` cannot count (so no analytic cost ratio, no search on
cost), and why; ``tests/adapters/test_coverage.py`` checks both lists."""

ORACLES: dict[str, tuple[str, ...]] = {name: ("taylorseer", "pab") for name in TINY}
"""Per covered class, the diffusers hooks cachesearch equals on its attention modules (``taylorseer``: diffusers'
TaylorSeer; ``pab``: Pyramid Attention Broadcast)."""


def exported() -> list[str]:
    """The transformer classes the installed diffusers exports, sorted."""
    return sorted(n for n in dir(transformers) if not n.startswith("_") and isinstance(getattr(transformers, n), type)
                  and hasattr(diffusers, n))


@dataclass(frozen=True)
class Row:
    name: str
    kind: str
    family: str
    lists: str
    components: str
    oracles: str
    macs: str
    note: str


def _row(name: str) -> Row:
    if name in LEFT_OUT:
        return Row(name, "—", "—", "—", "—", "—", "—", f"left out: {LEFT_OUT[name]}")
    model = build(name)
    adapter = adapter_for(model)
    space = adapter.block_space(model)
    lists = adapter.lists(model) if hasattr(adapter, "lists") else block_lists_of(model)
    kinds = dict.fromkeys(space.get(c).role for c in space.names(BlockKind.COMPONENT))
    oracles = ", ".join({"taylorseer": "TaylorSeer", "pab": "PAB"}[h] for h in ORACLES.get(name, ()))
    return Row(name, "video" if example_for(model).video else "image", adapter.family,
               ", ".join(f"`{a}`" for a in lists), ", ".join(f"`{k}`" for k in kinds) or "—",
               oracles or "—", "no" if name in NO_MACS else "yes",
               "; ".join(n for n in (TINY[name].notes, f"no MACs: {NO_MACS[name]}" if name in NO_MACS else "") if n))


def render() -> str:
    """The Markdown of ``docs/families.md``."""
    names = exported()
    rows = [_row(n) for n in names]
    covered = [r for r in rows if r.kind != "—"]
    video = sum(r.kind == "video" for r in covered)
    oracle = sum(r.oracles != "—" for r in covered)
    lines = [
        "# Denoiser families",
        "",
        "<!-- generated by `python -m tests.adapters.families` from the adapters and tests/adapters; do not edit -->",
        "",
        f"diffusers {diffusers.__version__} exports {len(names)} transformer classes. **{len(covered)} of "
        f"{len(names)}** work with cachesearch at block and component granularity ({len(covered) - video} image, "
        f"{video} video denoisers), each checked on a tiny random configuration by `tests/adapters/test_coverage.py`: "
        "an all-R schedule is bit-identical, `remove()` restores the model exactly, a skipped block and a skipped "
        "component really do not run (a Linear inside counted), residual and Taylor reuse run. "
        f"On {oracle} of them `cs.TaylorSeer` and an even-step attention mask equal diffusers' TaylorSeer and "
        "Pyramid Attention Broadcast hooks on the same modules (≤ 1e-5, float32; `tests/adapters/test_oracles.py`). "
        f"MACs (analytic cost ratios, the search's default cost) are counted for {len(covered) - len(NO_MACS)} of "
        f"them. {len(names) - len(covered)} classes are left out, each with its reason below.",
        "",
        "All but FLUX.1, SD3, PixArt and Wan (families with a small file of their own, as the UNets' `unet2d`: "
        "Wan's adds frames, CFG as two passes and Wan 2.2's two experts) run through the generic transformer "
        "adapter (family `transformer`): block lists named as diffusers' hooks name them, components found by "
        "class, block layouts from diffusers' `TransformerBlockRegistry` or ours ([design](design.md#adapters)).",
        "",
        "| class | denoises | adapter | block lists | component kinds | equal to diffusers' | MACs | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| `{r.name}` | {r.kind} | {r.family} | {r.lists} | {r.components} | {r.oracles} | {r.macs} | "
              f"{r.note} |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Write ``docs/families.md``."""
    TABLE.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {TABLE.relative_to(TABLE.parents[1])}\n")


if __name__ == "__main__":
    main()
