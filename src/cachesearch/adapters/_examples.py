"""Example inputs of one denoiser call, per denoiser class: what MAC counting and the tests run the model on.

Each entry is a builder modelled on the ``get_dummy_inputs`` of diffusers' own model tests
(``tests/models/transformers/test_models_transformer_*.py``), with its sizes taken from the model's config and
the requested latent size instead of fixed numbers, so that the same builder serves a tiny test configuration and a
published one on the meta device. The tables are :mod:`._examples_image` and :mod:`._examples_video`; a
denoiser class of another library registers its own with :func:`register_example_inputs`.

Data tensors are zeros (MACs do not depend on values), or standard normal draws from a given generator (tests);
masks are ones, position ids are what the model's pipeline passes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..schedule import ScheduleError

__all__ = ["Example", "Make", "Sizes", "example_for", "examples", "register_example_inputs"]


@dataclass(frozen=True)
class Sizes:
    """The sizes of one example call: batch, latent frames, latent height and width (VAE latent pixels, before
    the model's patching), text tokens."""

    batch: int
    frames: int
    height: int
    width: int
    text: int


class Make:
    """Tensor factory of one example call: device, dtype, and the generator for data (``None``: zeros)."""

    def __init__(self, *, device: torch.device | None, dtype: torch.dtype,
                 generator: torch.Generator | None = None) -> None:
        self.device, self.dtype, self.generator = device, dtype, generator

    def data(self, *shape: int) -> torch.Tensor:
        """A data tensor (latents, text embeddings): zeros, or normal draws when a generator is set."""
        if self.generator is None:
            return torch.zeros(*shape, device=self.device, dtype=self.dtype)
        return torch.randn(*shape, generator=self.generator, dtype=self.dtype).to(self.device)

    def full(self, value: float, *shape: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A constant tensor (timesteps, guidance scales, masks of ones)."""
        return torch.full(shape, value, device=self.device, dtype=dtype or self.dtype)

    def ones(self, *shape: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A tensor of ones (attention masks; ``dtype`` e.g. ``torch.bool`` or ``torch.long``)."""
        return self.full(1, *shape, dtype=dtype)

    def zeros(self, *shape: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A tensor of zeros that stays zero in tests (position ids, empty conditions)."""
        return self.full(0, *shape, dtype=dtype)

    def arange(self, n: int, dtype: torch.dtype = torch.long) -> torch.Tensor:
        """``0 .. n-1`` (token positions)."""
        return torch.arange(n, device=self.device, dtype=dtype)


Builder = Callable[[Make, Mapping[str, Any], Sizes], dict[str, Any]]


@dataclass(frozen=True)
class Example:
    """How to build one call's inputs of a denoiser class.

    Attributes:
        build: ``build(make, config, sizes) -> inputs``; the returned dict is passed as keyword arguments
            (``return_dict=False`` is added by the callers).
        height, width: default latent size when none is asked for (``None``: the config's ``sample_size``).
        frames: default latent frames (1 for image models).
        text: default text tokens (the family pipeline's ``max_sequence_length``).
        latent: the input that carries the noisy latents (what a sampling loop updates).
        timestep: the input that carries the timestep (a sampling loop sets it per step).
        timestep_scale: the timestep value of pure noise (1000 for most; 1 where the model takes sigmas).
        video: whether the model denoises videos (frames).
        config_size: ``config -> (frames, height, width)``, the default latent size where the model's config
            fixes it (learned positional embeddings: CogVideoX's ``sample_frames``, ``sample_height``, ...).
    """

    build: Builder
    height: int | None = 64
    width: int | None = 64
    frames: int = 1
    text: int = 256
    latent: str = "hidden_states"
    timestep: str = "timestep"
    timestep_scale: float = 1000.0
    video: bool = False
    config_size: Callable[[Mapping[str, Any]], tuple[int, int, int]] | None = None

    def default_frames(self, config: Mapping[str, Any]) -> int:
        """Default latent frames: the config's where it fixes them, else the table's."""
        return self.config_size(config)[0] if self.config_size is not None else self.frames

    def size(self, config: Mapping[str, Any]) -> tuple[int, int]:
        """Default latent ``(height, width)``: the config's where it fixes them, the table's, else the config's
        ``sample_size``."""
        if self.config_size is not None:
            return self.config_size(config)[1:]
        if self.height is not None and self.width is not None:
            return self.height, self.width
        sample = config.get("sample_size")
        if sample is None:
            raise ScheduleError("example inputs: the config has no sample_size; pass height and width")
        return (sample, sample) if isinstance(sample, int) else (int(sample[0]), int(sample[1]))

    def inputs(self, denoiser: torch.nn.Module, sizes: Sizes, *, device: torch.device | None, dtype: torch.dtype,
               generator: torch.Generator | None = None) -> dict[str, Any]:
        """The keyword inputs of one call of ``denoiser`` at ``sizes``."""
        make = Make(device=device, dtype=dtype, generator=generator)
        return self.build(make, getattr(denoiser, "config", {}), sizes)


_EXAMPLES: dict[str, Example] = {}


def register_example_inputs(class_name: str, example: Example) -> None:
    """Register how to build one call's inputs of the denoiser class called ``class_name`` (subclasses inherit
    it): MAC counting (cost ratios) needs them."""
    _EXAMPLES[class_name] = example


def examples() -> Mapping[str, Example]:
    """Every registered example-input builder, by denoiser class name."""
    return dict(_EXAMPLES)


def example(*class_names: str, **fields: Any) -> Callable[[Builder], Builder]:
    """Decorator of the tables: register ``build`` for ``class_names`` with the :class:`Example` ``fields``."""

    def register(build: Builder) -> Builder:
        for name in class_names:
            register_example_inputs(name, Example(build=build, **fields))
        return build

    return register


def example_for(denoiser: torch.nn.Module) -> Example:
    """The example-input builder of ``denoiser``'s class (or its nearest registered base class).

    Raises:
        ScheduleError: none is registered; the message says how to register one.
    """
    for cls in type(denoiser).__mro__:
        found = _EXAMPLES.get(cls.__name__)
        if found is not None:
            return found
    name = type(denoiser).__name__
    raise ScheduleError(
        f"no example inputs for {name}: counting MACs needs one call's inputs; register a builder with "
        f"cachesearch.adapters.register_example_inputs({name!r}, Example(build=...))"
    )
