"""The adapter seam: everything cachesearch knows about a denoiser family, as data registered per family.

A :class:`DenoiserAdapter` says where a pipeline keeps its denoiser, which blocks are cacheable (a
:class:`~cachesearch.schedule.BlockSpace`), example inputs for counting MACs, the latent shape, the default
image size and how a pipeline runs classifier-free guidance (:class:`CFG`). A :class:`BlockIO` says, per block
*class*, which argument carries the hidden state and which element of the output is the hidden state (as
diffusers' ``TransformerBlockRegistry`` + ``TransformerBlockMetadata``, which is read first where it knows the
class: :func:`block_io_of`). The runtime, the loaders, the cost model and the evaluator read these; none of them
guesses.

Transformer denoisers need no family of their own: the generic adapter (:mod:`._dit`) finds their block lists
and components from diffusers' metadata. A family module subclasses an adapter for what is special and
:func:`register_adapter` s it; :func:`register_block_io` registers the layout of a block class diffusers does not.

Torch only at import: diffusers' metadata is read lazily (:mod:`._diffusers`); classes are matched by name along
the MRO.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..schedule import BlockSpace, ScheduleError
from ._diffusers import diffusers_block_io

__all__ = [
    "CFG",
    "BlockIO",
    "DenoiserAdapter",
    "adapter_for",
    "adapters",
    "block_io_of",
    "denoiser_of",
    "family_of",
    "register_adapter",
    "register_block_io",
]


@dataclass(frozen=True, kw_only=True)
class BlockIO:
    """The input/output contract of one block class.

    Attributes:
        hidden_states_argument: keyword name of the hidden-state input.
        hidden_states_position: its position when passed positionally.
        return_hidden_states_index: element of a tuple (or ``BaseOutput``) output that is the hidden state;
            ``None`` when the block returns the hidden-state tensor itself. A block that returns a bare tensor
            although an index is set (FLUX's attention returns a pair in double-stream blocks, one tensor in
            single-stream ones) returns its hidden state.
        return_encoder_hidden_states_index: element that is the updated text stream, for dual-stream blocks
            (FLUX and SD3 blocks return ``(encoder_hidden_states, hidden_states)``); ``None`` otherwise.
        encoder_hidden_states_argument: keyword name of the text-stream input of dual-stream blocks.
        encoder_hidden_states_position: its position when passed positionally (``None``: keyword only).
        channel_dim: the channel dimension of the hidden-state output (a scale-shift is per channel): 1 for
            ``[B, C, H, W]`` feature maps, -1 for ``[B, L, C]`` token sequences.
    """

    hidden_states_argument: str = "hidden_states"
    hidden_states_position: int = 0
    return_hidden_states_index: int | None = None
    return_encoder_hidden_states_index: int | None = None
    encoder_hidden_states_argument: str = "encoder_hidden_states"
    encoder_hidden_states_position: int | None = None
    channel_dim: int = 1

    def hidden_input(self, args: tuple, kwargs: Mapping[str, Any]) -> torch.Tensor | None:
        """The hidden-state input of one call, or ``None`` when it was not passed as a tensor."""
        value = kwargs.get(self.hidden_states_argument)
        if value is None and len(args) > self.hidden_states_position:
            value = args[self.hidden_states_position]
        return value if isinstance(value, torch.Tensor) else None

    def encoder_input(self, args: tuple, kwargs: Mapping[str, Any]) -> torch.Tensor | None:
        """The text-stream input of one call of a dual-stream block, or ``None``."""
        value = kwargs.get(self.encoder_hidden_states_argument)
        pos = self.encoder_hidden_states_position
        if value is None and pos is not None and len(args) > pos:
            value = args[pos]
        return value if isinstance(value, torch.Tensor) else None

    @staticmethod
    def _items(out: Any) -> tuple:
        return tuple(out.values()) if isinstance(out, Mapping) else tuple(out)

    def hidden_output(self, out: Any) -> torch.Tensor:
        """The hidden-state tensor of one output."""
        idx = self.return_hidden_states_index
        if isinstance(out, torch.Tensor):
            return out
        if idx is None:
            raise TypeError(f"expected the block to return a tensor, got {type(out).__name__}")
        value = self._items(out)[idx]
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"output element {idx} is a {type(value).__name__}, not the hidden-state tensor")
        return value

    def encoder_output(self, out: Any) -> torch.Tensor | None:
        """The text-stream tensor of one output of a dual-stream block; ``None`` for single-stream blocks,
        bare-tensor outputs and a ``None`` element (SD3's last block returns no text stream)."""
        idx = self.return_encoder_hidden_states_index
        if idx is None or isinstance(out, torch.Tensor):
            return None
        value = self._items(out)[idx]
        return value if isinstance(value, torch.Tensor) else None

    def replace_outputs(self, out: Any, hidden: torch.Tensor, encoder: torch.Tensor | None = None) -> Any:
        """``out`` with its hidden-state tensor replaced by ``hidden`` and, when given, its text-stream tensor by
        ``encoder`` (structure kept)."""
        if isinstance(out, torch.Tensor):
            return hidden
        new = {self.return_hidden_states_index: hidden}
        if encoder is not None:
            new[self.return_encoder_hidden_states_index] = encoder
        if isinstance(out, Mapping):  # diffusers BaseOutput: rebuild with keyword arguments
            keys = list(out)
            return type(out)(**{k: new.get(i, out[k]) for i, k in enumerate(keys)})
        items = [new.get(i, v) for i, v in enumerate(out)]
        return type(out)(items) if isinstance(out, list) else tuple(items)

    def replace_hidden_output(self, out: Any, new: torch.Tensor) -> Any:
        """``out`` with its hidden-state tensor replaced by ``new`` (structure kept)."""
        if self.return_hidden_states_index is None and not isinstance(out, torch.Tensor):
            return new
        return self.replace_outputs(out, new)


_BLOCK_IO: dict[str, BlockIO] = {}
_OVERRIDES: set[str] = set()


def register_block_io(class_name: str, io: BlockIO, *, overrides_diffusers: bool = False) -> None:
    """Register the I/O contract of the block class called ``class_name`` (subclasses inherit it).

    diffusers' ``TransformerBlockRegistry`` is read first where it registers the class; ``overrides_diffusers``
    puts this contract before it (for a class diffusers registers wrongly; say why where you call it)."""
    _BLOCK_IO[class_name] = io
    if overrides_diffusers:
        _OVERRIDES.add(class_name)
    else:
        _OVERRIDES.discard(class_name)


def block_io_of(module: torch.nn.Module, *, path: str | None = None) -> BlockIO:
    """The :class:`BlockIO` of ``module``'s class or its nearest base class that has one: from diffusers'
    ``TransformerBlockRegistry`` where it registers the class (unless we override it), else from
    :func:`register_block_io`.

    Raises:
        ScheduleError: no contract is known; the message names the class and how to register one.
    """
    for cls in type(module).__mro__:
        io = _BLOCK_IO.get(cls.__name__)
        if io is not None and cls.__name__ in _OVERRIDES:
            return io
        fields = diffusers_block_io(cls)
        if fields is not None:
            return BlockIO(**fields)
        if io is not None:
            return io
    where = f'blocks["{path}"]: ' if path else ""
    raise ScheduleError(
        f"{where}no I/O contract is registered for {type(module).__name__}; this reuse mode needs to know which "
        f"input and output element is the hidden state: register one with "
        f"cachesearch.adapters.register_block_io({type(module).__name__!r}, BlockIO(...))"
    )


class CFG(str, enum.Enum):
    """How a family's pipelines run classifier-free guidance.

    ``batched``: one denoiser call per step on the batch ``[uncond; cond]`` (SD, SDXL, SD3, PixArt, SANA).
    ``separate``: two calls per step, cond then uncond, each inside diffusers' ``cache_context("cond")`` /
    ``cache_context("uncond")`` (Wan, HunyuanVideo, Qwen-Image's true CFG). ``none``: guidance-distilled, the scale
    is an embedding and each step is one call on the cond batch (FLUX.1).
    """

    BATCHED = "batched"
    SEPARATE = "separate"
    NONE = "none"


class DenoiserAdapter:
    """What cachesearch needs to know about one denoiser family. Subclass it and :func:`register_adapter`.

    Attributes:
        family: short family name written into schedule files (``"unet2d"``).
        pipeline_attribute: the pipeline attribute that holds the denoiser (``"unet"``, ``"transformer"``).
        description: the models it covers, for error messages.
        cfg: how the family's pipelines run classifier-free guidance (:class:`CFG`).
        fallback: tried only after every adapter that is not a fallback (the generic transformer adapter).
    """

    family: str = ""
    pipeline_attribute: str = ""
    description: str = ""
    cfg: CFG = CFG.BATCHED
    fallback: bool = False

    def matches(self, denoiser: torch.nn.Module) -> bool:  # pragma: no cover - interface
        """Whether ``denoiser`` belongs to this family."""
        raise NotImplementedError

    def block_space(
        self, denoiser: torch.nn.Module, *, macs: Mapping[str, int] | None = None, other_macs: int | None = None
    ) -> BlockSpace:  # pragma: no cover - interface
        """The cacheable blocks in execution order (stages before their layers), optionally with MACs."""
        raise NotImplementedError

    def example_inputs(
        self,
        denoiser: torch.nn.Module,
        *,
        batch_size: int = 1,
        height: int | None = None,
        width: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> dict[str, Any]:  # pragma: no cover - interface
        """Keyword inputs of one denoiser call (zeros), for MAC counting; sizes are latent sizes."""
        raise NotImplementedError

    def latent_shape(self, pipe: Any, height: int, width: int) -> tuple[int, ...]:  # pragma: no cover
        """Shape of one sample's initial latents for an image of ``height`` × ``width`` pixels."""
        raise NotImplementedError

    def default_size(self, pipe: Any) -> tuple[int, int]:  # pragma: no cover - interface
        """The pipeline's default image size in pixels ``(height, width)``."""
        raise NotImplementedError

    def uses_cfg(self, pipe: Any, guidance_scale: float) -> bool:
        """Whether a call with ``guidance_scale`` batches ``[uncond; cond]`` (classifier-free guidance): with
        :attr:`cfg` ``batched`` when ``guidance_scale > 1``."""
        return self.cfg is CFG.BATCHED and guidance_scale > 1

    def refusal(self, denoiser: torch.nn.Module) -> str | None:
        """Why a fallback adapter does not cover ``denoiser`` and how to make it (for the one-line error)."""
        return None

    def call_kwargs(self, pipe: Any) -> dict[str, Any]:
        """Pipeline arguments every evaluation call needs so that it runs at exactly the given size and
        latents (default: none; PixArt turns its resolution binning off)."""
        return {}


_ADAPTERS: dict[str, DenoiserAdapter] = {}


def register_adapter(adapter: DenoiserAdapter) -> DenoiserAdapter:
    """Register ``adapter`` under its family name (a later registration of the same family replaces it)."""
    if not adapter.family or not adapter.pipeline_attribute:
        raise ValueError("an adapter needs a family and a pipeline_attribute")
    _ADAPTERS[adapter.family] = adapter
    return adapter


def adapters() -> tuple[DenoiserAdapter, ...]:
    """Every registered adapter in the order a denoiser is matched: families in registration order, then the
    fallbacks."""
    values = list(_ADAPTERS.values())
    return tuple([a for a in values if not a.fallback] + [a for a in values if a.fallback])


def _supported() -> str:
    return "; ".join(f"{a.family}: {a.description}" for a in adapters()) or "none registered"


def adapter_for(denoiser_or_family: torch.nn.Module | str) -> DenoiserAdapter:
    """The adapter of a denoiser module (or of a family name).

    Raises:
        ScheduleError: no registered adapter covers it; the message lists what is supported.
    """
    if isinstance(denoiser_or_family, str):
        try:
            return _ADAPTERS[denoiser_or_family]
        except KeyError:
            raise ScheduleError(
                f"model.family: no cachesearch adapter for family {denoiser_or_family!r}; supported: {_supported()}"
            ) from None
    for adapter in adapters():
        if adapter.matches(denoiser_or_family):
            return adapter
    name = type(denoiser_or_family).__name__
    for adapter in adapters():
        hint = adapter.refusal(denoiser_or_family)
        if hint:
            raise ScheduleError(f"no cachesearch adapter for {name}: {hint}")
    raise ScheduleError(f"no cachesearch adapter for {name}; supported: {_supported()}")


def family_of(denoiser: torch.nn.Module) -> str:
    """Adapter family of a denoiser (``"unet2d"``), or raise naming what is supported."""
    return adapter_for(denoiser).family


def denoiser_of(target: Any) -> torch.nn.Module:
    """The denoiser of a pipeline (the attribute its family's adapter names), or ``target`` if it is a module."""
    for adapter in adapters():
        module = getattr(target, adapter.pipeline_attribute, None)
        if isinstance(module, torch.nn.Module):
            return module
    if isinstance(target, torch.nn.Module):
        return target
    attrs = "/".join(dict.fromkeys(f"`{a.pipeline_attribute}`" for a in adapters()))
    raise ScheduleError(
        f"expected a diffusers pipeline with a {attrs} or a denoiser module, got {type(target).__name__}"
    )
