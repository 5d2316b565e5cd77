"""What a search space needs to know about the model and sampler of a study."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...schedule import BlockKind, BlockProfile, BlockSpace

if TYPE_CHECKING:
    from ...evaluate import Evaluator

__all__ = ["SpaceContext"]


@dataclass(frozen=True)
class SpaceContext:
    """What a space needs to know about the model and sampler of a study.

    Attributes:
        num_steps: the reference sampler's steps (``--steps``).
        scheduler: the scheduler's class name.
        accepts_timesteps: whether the scheduler takes explicit ``timesteps=`` (needed by linear/power spacing).
        stages: stage-level block names in execution order.
        blocks: every cacheable block name (stages and layers).
        n_branches: number of DeepCache skip branches (0 if none).
        profile: the block-change profile over ``num_steps`` steps (Block Caching), if computed.
        profile_id: an identifier of that profile, recorded in policies.
        block_space: the denoiser's block space (baselines that compile masks need it), if known.
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

    @classmethod
    def of(cls, evaluator: Evaluator, profile: BlockProfile | None = None,
           profile_id: str | None = None) -> SpaceContext:
        """The context of an evaluator's model and sampler (reads ``pipe.scheduler``, ``num_inference_steps``
        and ``space``)."""
        scheduler = evaluator.pipe.scheduler
        accepts = "timesteps" in inspect.signature(scheduler.set_timesteps).parameters
        space = evaluator.space
        return cls(
            num_steps=evaluator.num_inference_steps, scheduler=type(scheduler).__name__, accepts_timesteps=accepts,
            stages=space.names(BlockKind.STAGE), blocks=space.names(), n_branches=len(space.deepcache_branches),
            profile=profile, profile_id=profile_id, block_space=space,
        )
