"""What a search space needs to know about the model and sampler of a study."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..._compile import pipeline_takes_timesteps, scheduler_takes_timesteps
from ...adapters import denoiser_of
from ...schedule import BlockKind, BlockProfile, BlockSpace

if TYPE_CHECKING:
    from ...evaluate import Evaluator

__all__ = ["TRANSFORMER_FAMILIES", "SpaceContext", "is_transformer"]

TRANSFORMER_FAMILIES = ("flux", "sd3", "pixart", "wan", "transformer")
"""The adapter families of transformer denoisers (for messages; see :func:`is_transformer`): the family files, and
``transformer``, the generic adapter of every other diffusers transformer with a block list (docs/families.md)."""


def is_transformer(blocks: BlockSpace) -> bool:
    """Whether a denoiser is a stack of transformer blocks (the DiT adapters: FLUX, SD3, PixArt): every stage is
    a transformer block (role ``block``) and the blocks have components (``attn``, ``ff``, ...)."""
    stages = [b for b in blocks.blocks if b.kind is BlockKind.STAGE]
    return bool(stages) and all(b.role == "block" for b in stages) and bool(blocks.names(BlockKind.COMPONENT))


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
        denoiser_class: the denoiser's class name (the runtime families that only some classes run: SeaCache).
        pipe: the pipeline itself, if known (the runtime families ask whether their library can enable its cache
            on it).
        mag_ratios: MagCache's per-step ratios from its own calibration run on the train prompts (once per
            search), if the space has the ``magcache`` family.
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
    denoiser_class: str = ""
    pipe: Any = field(default=None, compare=False, repr=False)
    mag_ratios: tuple[float, ...] | None = field(default=None, compare=False)

    @classmethod
    def of(cls, evaluator: Evaluator, profile: BlockProfile | None = None,
           profile_id: str | None = None, mag_ratios: tuple[float, ...] | None = None) -> SpaceContext:
        """The context of an evaluator's model and sampler (reads ``pipe.scheduler``, ``num_inference_steps``
        and ``space``)."""
        pipe = evaluator.pipe
        scheduler = pipe.scheduler
        accepts = scheduler_takes_timesteps(scheduler) and pipeline_takes_timesteps(pipe)
        space = evaluator.space
        return cls(
            num_steps=evaluator.num_inference_steps, scheduler=type(scheduler).__name__, accepts_timesteps=accepts,
            stages=space.names(BlockKind.STAGE), blocks=space.names(), n_branches=len(space.deepcache_branches),
            profile=profile, profile_id=profile_id, block_space=space, family=space.family,
            transformer=is_transformer(space), components=space.names(BlockKind.COMPONENT),
            attention=space.attention_components(), pipeline=type(pipe).__name__,
            denoiser_class=type(denoiser_of(pipe)).__name__, pipe=pipe, mag_ratios=mag_ratios,
        )

    def denoiser(self) -> str:
        """How messages name the denoiser: ``"this unet2d denoiser"`` (``"this denoiser"`` when unknown)."""
        return f"this {self.family} denoiser" if self.family else "this denoiser"
