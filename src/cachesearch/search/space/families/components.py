"""Family ``components``: per-component recompute masks on a transformer denoiser, as ECAD (arXiv 2506.15682)
parameterises them — a binary tensor step × block × component, 1 = recompute, 0 = reuse the cached output.

Two forms, each compiling to masks on component paths (``transformer_blocks.0.attn``, ``…0.ff``, ...):

``periodic`` (compact, the default space's): a period, a phase and an active window ``[start, end)`` per
    group of components — one group per component *kind* (``transformer_blocks.attn``: the ``attn`` of every
    double-stream block; ``groups: kinds``) or per component (``groups: components``); a
    :class:`~cachesearch.schedule.PeriodicMask` over the components. 4 parameters per group.
``binary`` (ECAD's full formulation): one parameter ``components.<component>.s<k>`` ∈ {0, 1} per component and
    step ``k ≥ 1`` (step 0 always recomputes: nothing is cached yet); a
    :class:`~cachesearch.schedule.BlockMask`. It always runs the reference steps (the tensor is per step).

Baselines: FORA-style uniform schedules — every selected component recomputes every ``N`` steps
(``components-nN``) for each interval of the grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ....schedule import BlockMask, BlockSpace, PeriodicMask, Policy
from ..context import SpaceContext, is_transformer
from ..params import Dist, Fields, FloatParam, IntParam
from ._dit import check_component_spec, kind_of, kinds, nonempty, require_transformer, select_components
from ._window import decode_window, encode_window, parse_window, window_dists
from .base import BaselineGrid, MaskFamily

if TYPE_CHECKING:
    from ....evaluate._baselines import Baseline

__all__ = ["FORMS", "GROUPS", "ComponentsFamily", "binary_mask"]

FORMS = ("periodic", "binary")
GROUPS = ("kinds", "components")
BITS = (0, 1)
"""The values of a binary parameter: 0 = reuse the cached output at that step, 1 = recompute (ECAD's)."""


def binary_mask(bits: Sequence[int]) -> str:
    """The mask of one component from its bits at steps 1..N-1 (step 0 always recomputes)."""
    return "R" + "".join("R" if int(b) else "." for b in bits)


@dataclass(frozen=True)
class ComponentsFamily(MaskFamily):
    """Which components are masked (``components``), in which form, and the ranges of the periodic form."""

    form: str
    components: str | tuple[str, ...]
    groups: str
    period: IntParam
    phase: IntParam
    start: FloatParam
    end: FloatParam

    name: ClassVar[str] = "components"
    defaults: ClassVar[Mapping[str, Any]] = {
        "form": "periodic",
        "components": "all",
        "groups": "kinds",
        "period": {"low": 1, "high": 5},
        "phase": {"low": 0, "high": 4},
        "start": {"low": 0.0, "high": 0.5},
        "end": {"low": 0.5, "high": 1.0},
    }
    grid: ClassVar[BaselineGrid | None] = BaselineGrid("intervals", integer=True, lo=2)

    @classmethod
    def parse(cls, fields: Fields, path: str, section: Mapping[str, Any]) -> ComponentsFamily:
        form, groups = section["form"], section["groups"]
        if form not in FORMS:
            raise fields.error(f"{path}.form", f"expected one of {list(FORMS)}, got {form!r}")
        if groups not in GROUPS:
            raise fields.error(f"{path}.groups", f"expected one of {list(GROUPS)}, got {groups!r}")
        return cls(
            form=form,
            components=check_component_spec(fields, f"{path}.components", section["components"]),
            groups=groups,
            **parse_window(fields, path, section),
        )

    @classmethod
    def supports(cls, blocks: BlockSpace) -> bool:
        return is_transformer(blocks)

    @property
    def reference_steps(self) -> bool:  # type: ignore[override]
        """The binary form is a per-step tensor of the reference steps; the periodic form follows the step set."""
        return self.form == "binary"

    # -- the model's components ------------------------------------------------------------------------
    def selected(self, ctx: SpaceContext) -> tuple[str, ...]:
        """The masked components, in execution order."""
        return select_components(self.components, ctx)

    def group_of(self, component: str) -> str:
        """The group whose parameters a component's mask takes (its kind, or itself)."""
        return kind_of(component) if self.groups == "kinds" else component

    def group_names(self, ctx: SpaceContext) -> tuple[str, ...]:
        """The parameter groups of the periodic form, in execution order."""
        chosen = self.selected(ctx)
        return kinds(chosen) if self.groups == "kinds" else chosen

    def dists(self, ctx: SpaceContext, fields: Fields) -> list[Dist]:
        require_transformer(self.name, ctx, fields)
        nonempty(select_components(self.components, ctx, fields, "mask.components.components"), ctx, fields,
                 "mask.components.components")
        if self.form == "binary":
            return [Dist.choice(f"components.{c}.s{k}", BITS) for c in self.selected(ctx)
                    for k in range(1, ctx.num_steps)]
        out = []
        for g in self.group_names(ctx):
            out += window_dists(fields, f"components.{g}", "mask.components", self)
        return out

    def notes(self, ctx: SpaceContext) -> list[str]:
        if self.form != "binary" or not ctx.transformer:
            return []
        n = len(self.selected(ctx))
        return [f"components: ECAD's binary form, {n} components × {ctx.num_steps - 1} steps = "
                f"{n * (ctx.num_steps - 1)} parameters (step 0 always recomputes)"]

    # -- trials ----------------------------------------------------------------------------------------
    def policy(self, values: Mapping[str, Any], ctx: SpaceContext, num_steps: int) -> Policy:
        if self.form == "binary":
            return BlockMask({c: binary_mask([values[f"components.{c}.s{k}"] for k in range(1, ctx.num_steps)])
                              for c in self.selected(ctx)})
        entries = []
        for c in self.selected(ctx):
            entries.append((c, *decode_window(values, f"components.{self.group_of(c)}")))
        return PeriodicMask(blocks=tuple(entries))

    def params(self, policy: Policy | None, ctx: SpaceContext) -> dict[str, Any] | None:
        chosen = self.selected(ctx)
        out: dict[str, Any] = {}
        if self.form == "binary":
            if not isinstance(policy, BlockMask) or [b[0] for b in policy.blocks] != list(chosen):
                return None
            for c, cond, uncond in policy.blocks:
                if cond != uncond or len(cond) != ctx.num_steps or cond[0] != "R":
                    return None
                out.update({f"components.{c}.s{k}": int(cond[k] == "R") for k in range(1, ctx.num_steps)})
            return out
        if not isinstance(policy, PeriodicMask) or [e[0] for e in policy.blocks] != list(chosen):
            return None
        for c, *window in policy.blocks:
            values = encode_window(f"components.{self.group_of(c)}", *window)
            if any(out.get(k, v) != v for k, v in values.items()):
                return None  # the components of one kind differ: not a per-kind policy
            out.update(values)
        return out

    def baselines(self, ctx: SpaceContext, grid: Sequence[Any] | None) -> list[Baseline]:
        """``components-nN``: every selected component recomputes at steps ``0, N, 2N, …`` and reuses its
        output in between (FORA's uniform schedule, on components), for each interval of the grid (default
        2, 3, 4)."""
        from ....evaluate._baselines import Baseline

        if not ctx.transformer or not self.selected(ctx):
            return []
        out = []
        for n in sorted(set(grid if grid is not None else (2, 3, 4))):
            if self.form == "binary":
                bits = [int(k % n == 0) for k in range(1, ctx.num_steps)]
                policy: Policy = BlockMask({c: binary_mask(bits) for c in self.selected(ctx)})
            else:
                policy = PeriodicMask(blocks=tuple((c, n, 0, 0.0, 1.0) for c in self.selected(ctx)))
            out.append(Baseline(kind=self.name, name=f"components-n{n}", policy=policy))
        return out
