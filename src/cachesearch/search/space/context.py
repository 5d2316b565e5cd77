"""What a search space needs to know about the model and sampler of a study."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...schedule import BlockKind, BlockProfile, BlockSpace

if TYPE_CHECKING:
    from ...evaluate import Evaluator

__all__ = ["TRANSFORMER_FAMILIES", "SpaceContext", "is_transformer"]

TRANSFORMER_FAMILIES = ("flux", "sd3", "pixart")
"""The adapter families of the transformer denoisers cachesearch ships (for messages; see :func:`is_transformer`)."""


def is_transformer(blocks: BlockSpace) -> bool:
    """Whether a denoiser is a stack of transformer blocks (the DiT adapters: FLUX, SD3, PixArt): every stage is
    a transformer block (role ``block``) and the blocks have components (``attn``, ``ff``, ...)."""
    stages = [b for b in blocks.blocks if b.kind is BlockKind.STAGE]
    return bool(stages) and all(b.role == "block" for b in stages) and bool(blocks.names(BlockKind.COMPONENT))


def _takes(fn: Any, name: str) -> bool:
    """Whether callable ``fn`` takes a parameter ``name`` (False when it has no inspectable signature)."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _pipeline_takes_timesteps(pipe: Any) -> bool:
    """Whether a pipeline's ``__call__`` takes ``timesteps=``: the first ``__call__`` along its MRO that names
    its parameters decides (a subclass that only forwards ``**kwargs``, as the embedded FLUX pipeline, is looked
    through); True for an object without an inspectable ``__call__`` (a bare sampler loop)."""
    for cls in type(pipe).__mro__:
        call = cls.__dict__.get("__call__")
        if call is None or cls is object:
            continue
        try:
            params = inspect.signature(call).parameters
        except (TypeError, ValueError):
            return True
        if "timesteps" in params:
            return True
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return False
    return True


@dataclass(frozen=True)
class SpaceContext:
    """What a space needs to know about the model and sampler of a study.

    Attributes:
        num_steps: the reference sampler's steps (``--steps``).
        scheduler: the scheduler's class name.
        accepts_timesteps: whether the sampler takes explicit ``timesteps=`` (needed by linear/power spacing):
            the scheduler's ``set_timesteps`` and the pipeline's ``__call__`` both must (``FluxPipeline`` takes
            ``sigmas=`` only).
        stages: stage-level block names in execution order (a DiT's transformer blocks).
        blocks: every cacheable block name (stages and layers).
        n_branches: number of DeepCache skip branches (0 if none).
        profile: the block-change profile over ``num_steps`` steps (Block Caching), if computed.
        profile_id: an identifier of that profile, recorded in policies.
        block_space: the denoiser's block space (baselines that compile masks need it), if known.
        family: the denoiser's adapter family (``unet2d``, ``flux``, ``sd3``, ``pixart``), if known.
        transformer: whether the denoiser is a stack of transformer blocks (:func:`is_transformer`): what the
            families ``taylorseer``, ``middle`` and ``components`` need.
        components: the components of its blocks (``transformer_blocks.0.attn``, ...) in execution order.
        attention: the attention modules among ``components`` (TaylorSeer's default targets).
        pipeline: the pipeline's class name, if the sampler is a pipeline (for messages).
    """

    num_steps: int
    scheduler: str
    accepts_timesteps: bool
    stages: tuple[str, ...]
    blocks: tuple[str, ...]
    n_branches: int
    profile: BlockProfile | None = field(default=None, compare=False)
    profile_id: str | None = None
    block_space: BlockSpace | None = field(default=None, compare=False, repr=False)
    family: str = ""
    transformer: bool = False
    components: tuple[str, ...] = ()
    attention: tuple[str, ...] = ()
    pipeline: str = ""

    @classmethod
    def of(cls, evaluator: Evaluator, profile: BlockProfile | None = None,
           profile_id: str | None = None) -> SpaceContext:
        """The context of an evaluator's model and sampler (reads ``pipe.scheduler``, ``num_inference_steps``
        and ``space``)."""
        pipe = evaluator.pipe
        scheduler = pipe.scheduler
        accepts = _takes(scheduler.set_timesteps, "timesteps") and _pipeline_takes_timesteps(pipe)
        space = evaluator.space
        return cls(
            num_steps=evaluator.num_inference_steps, scheduler=type(scheduler).__name__, accepts_timesteps=accepts,
            stages=space.names(BlockKind.STAGE), blocks=space.names(), n_branches=len(space.deepcache_branches),
            profile=profile, profile_id=profile_id, block_space=space, family=space.family,
            transformer=is_transformer(space), components=space.names(BlockKind.COMPONENT),
            attention=space.attention_components(), pipeline=type(pipe).__name__,
        )

    def denoiser(self) -> str:
        """How messages name the denoiser: ``"this unet2d denoiser"`` (``"this denoiser"`` when unknown)."""
        return f"this {self.family} denoiser" if self.family else "this denoiser"
