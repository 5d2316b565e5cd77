"""How the evaluator runs a runtime schedule (a library's own cache, deciding per call on the device): one image per
pipeline call, with the MACs of what executed counted (a base class of :class:`~._evaluator.Evaluator`, which sets
the attributes used here in its constructor)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from cachesearch.models._executed_cost import ExecutedCost
    from cachesearch.schedule import BlockSpace

    from ._fixtures import Fixtures

__all__ = ["EvaluatorRuntime"]


class EvaluatorRuntime:
    """The executed-cost counter and the counted generation of runtime schedules."""

    denoiser: Any
    space: BlockSpace
    fixtures: Fixtures
    _executed_cost: ExecutedCost | None

    @property
    def executed_cost(self) -> ExecutedCost:
        """The counter of what ran in each denoiser call (priced with this evaluator's per-block MACs), built once."""
        if self._executed_cost is None:
            from cachesearch.models._executed_cost import ExecutedCost

            self._executed_cost = ExecutedCost(self.denoiser, space=self.space)
        return self._executed_cost

    def _generate_counted(self, counter: ExecutedCost, split: str, kwargs: Mapping[str, Any], stage: str,
                          which: slice) -> tuple[torch.Tensor, list[float]]:
        """Images of a runtime schedule, one per pipeline call (its library decides per call, and every image starts
        with a cold cache), and each image's cost ratio: the MACs of the modules that executed in its denoiser calls
        over those calls at full compute."""
        costs: list[float] = []

        @contextlib.contextmanager
        def count(_first: int) -> Iterator[None]:
            counter.reset()
            with counter.counting():
                yield
            # a runtime schedule runs the reference's steps: the calls it made are the reference's (two per step
            # where the pipeline runs the cond and uncond passes apart), so full compute is those calls'
            costs.append(counter.report().ratio())

        images = self.fixtures.generate(split, kwargs, stage, which, batch_size=1, around=count)
        return images, costs
