"""What the random-weight ``arch:`` presets share: cheap construction and the CLIP text towers.

Parameters are created on the ``meta`` device, then allocated once on the target device and dtype and filled
with a seeded variance-preserving init (:func:`_init_random_`); see :mod:`._presets` for why. The CLIP-L and
CLIP-bigG text configurations serve SD 1.5, SDXL, SD3 and FLUX.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch

__all__ = ["CLIP_BIGG_TEXT", "CLIP_L_TEXT", "_allocate_", "_build", "_init_random_", "_parameters_on_meta"]

# openai/clip-vit-large-patch14 text tower (SD 1.x text_encoder, SDXL text_encoder; FLUX and SD3 text_encoder).
CLIP_L_TEXT: dict[str, Any] = {
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 2,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "projection_dim": 768,
    "vocab_size": 49408,
}

# laion/CLIP-ViT-bigG-14 text tower (SDXL and SD3 text_encoder_2).
CLIP_BIGG_TEXT: dict[str, Any] = {
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 2,
    "hidden_act": "gelu",
    "hidden_size": 1280,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 5120,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "pad_token_id": 1,
    "projection_dim": 1280,
    "vocab_size": 49408,
}

# ----------------------------------------------------------------------------------------------------
# Cheap construction: parameters on meta, then allocated on the target device and initialised once
# ----------------------------------------------------------------------------------------------------

_CONSTRUCT_LOCK = threading.Lock()


@contextlib.contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Create every ``nn.Parameter`` on the meta device while buffers are built normally.

    This is the technique of ``accelerate.init_empty_weights(include_buffers=False)``: it patches
    ``nn.Module.register_parameter`` for the duration of the block (process-wide; our own constructions are
    serialised by a lock). The default initialisers then run on meta tensors, i.e. cost nothing.
    """
    original = torch.nn.Module.register_parameter

    def register_parameter(module: torch.nn.Module, name: str, param: torch.nn.Parameter | None) -> None:
        original(module, name, param)
        if param is not None and param.device.type != "meta":
            meta = param.to("meta")
            module._parameters[name] = type(param)(meta, requires_grad=param.requires_grad)

    with _CONSTRUCT_LOCK:
        torch.nn.Module.register_parameter = register_parameter  # type: ignore[method-assign]
        try:
            yield
        finally:
            torch.nn.Module.register_parameter = original  # type: ignore[method-assign]


def _fan_in(param: torch.Tensor) -> int:
    return max(1, param[0].numel())


@torch.no_grad()
def _allocate_(module: torch.nn.Module, *, device: torch.device, dtype: torch.dtype) -> None:
    """Replace every parameter by an uninitialised one on ``device``/``dtype`` (tied parameters stay tied) and
    move buffers there (floating buffers cast to ``dtype``; CLIP's int64 ``position_ids`` stay int64)."""
    replaced: dict[int, torch.nn.Parameter] = {}
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is None:
                continue
            if id(param) not in replaced:
                target = dtype if param.is_floating_point() else param.dtype
                replaced[id(param)] = torch.nn.Parameter(
                    torch.empty(param.shape, device=device, dtype=target), requires_grad=param.requires_grad
                )
            sub._parameters[name] = replaced[id(param)]
        for name, buf in list(sub._buffers.items()):
            if buf is not None:
                target = dtype if buf.is_floating_point() else buf.dtype
                sub._buffers[name] = buf.to(device=device, dtype=target)


@torch.no_grad()
def _init_random_(module: torch.nn.Module, *, seed: int) -> None:
    """Seeded variance-preserving init of every parameter of ``module`` (all on one device).

    Weights (ndim >= 2, fan-in = elements per output row): ``U(-sqrt(3/fan_in), sqrt(3/fan_in))`` (LeCun
    variance, uniform because ``uniform_`` is ~1.5x cheaper than ``normal_`` on CPU); 1-D ``weight`` scales
    (GroupNorm/LayerNorm): 1; biases and other parameters: 0. One generator, parameters in registration order.
    """
    params = list(module.parameters())
    if not params:
        return
    generator = torch.Generator(device=params[0].device).manual_seed(seed)
    seen: set[int] = set()
    for sub_name, sub in module.named_modules():
        for name, param in sub.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            if not param.is_floating_point():
                raise TypeError(f"cannot initialise non-float parameter {sub_name}.{name} ({param.dtype})")
            if param.ndim >= 2:
                bound = math.sqrt(3.0 / _fan_in(param))
                param.uniform_(-bound, bound, generator=generator)
            else:
                param.fill_(1.0 if name == "weight" else 0.0)


def _build(
    factory: Callable[[], torch.nn.Module], *, device: torch.device, dtype: torch.dtype, seed: int
) -> torch.nn.Module:
    if device.type == "meta":
        with torch.device("meta"):
            module = factory()
        _allocate_(module, device=device, dtype=dtype)
    else:
        with _parameters_on_meta():
            module = factory()
        _allocate_(module, device=device, dtype=dtype)
        _init_random_(module, seed=seed)
    module.eval()
    module._cachesearch_random_weights = True
    return module
