"""Analytic per-block cost: multiply-accumulates (MACs) of one denoiser call, per module path.

Counts come from :class:`torch.utils.flop_counter.FlopCounterMode`, which applies a formula per aten op
(``mm``/``addmm``/``bmm``/convolutions/scaled-dot-product attention: ``2*m*n*k`` FLOPs per matmul). MACs are
FLOPs / 2. Element-wise work (norms, activations, additions, softmax, up-sampling, concatenation) has no
formula and counts zero: the numbers are a noise-free proxy for compute, not a latency model.

Attribution does not use FlopCounterMode's own module table (keyed by ``ClassName.path`` of whichever module
it happens to see first). Instead a forward pre-hook and a forward hook on each requested module read the
counter's running total on entry and exit, so nested paths (a stage and its layers) are each exact, modules
called several times accumulate, and the result does not depend on how ``forward`` reaches the model.

On the ``meta`` device nothing is allocated or computed, so the SD 1.5 / SDXL UNets are costed in well under
a second: build them with ``build_arch_pipeline(name, device="meta", components="unet")``, or let
:func:`unet2d_costs` make a meta replica of any diffusers UNet from its config.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["MacsReport", "module_macs", "unet2d_costs", "unet2d_example_inputs"]


@dataclass(frozen=True)
class MacsReport:
    """MACs of one ``forward`` call.

    Attributes:
        total_macs: Everything counted during the call.
        per_module: MACs inside each requested module path, in the order requested (0 for a module that
            did not run). Nested paths are each reported in full.
        other_macs: ``total_macs`` minus the outermost requested paths (paths nested inside another
            requested path are not subtracted twice), e.g. ``conv_in``, the time embedding and ``conv_out``
            when the stages of a UNet were requested.
    """

    total_macs: int
    per_module: dict[str, int] = field(default_factory=dict)
    other_macs: int = 0


def _is_inside(path: str, parent: str) -> bool:
    return path.startswith(parent + ".")


def module_macs(
    model: torch.nn.Module, forward: Callable[[], object], module_paths: Sequence[str]
) -> MacsReport:
    """Count the MACs of ``forward()`` in total and inside each of ``module_paths`` of ``model``.

    Args:
        model: The module that ``module_paths`` are relative to (e.g. a UNet).
        forward: Zero-argument callable that runs the model once (e.g. ``lambda: unet(x, t, ehs)``); it may
            run anything else too, all of which counts towards ``total_macs``. It runs under
            ``torch.no_grad()``; use meta-device modules and inputs to avoid allocating and computing.
        module_paths: Dotted submodule paths (``"down_blocks.0"``, ``"mid_block"``,
            ``"up_blocks.1.attentions.0"``), any mix of levels.

    Raises:
        ValueError: empty, duplicate or non-existent paths.
    """
    paths = list(module_paths)
    if isinstance(module_paths, str):
        raise ValueError("module_paths must be a sequence of paths, not a single string")
    if len(set(paths)) != len(paths):
        dupes = sorted({p for p in paths if paths.count(p) > 1})
        raise ValueError(f"duplicate module paths: {dupes}")
    modules: dict[str, torch.nn.Module] = {}
    for path in paths:
        if not isinstance(path, str) or not path:
            raise ValueError(f"module paths must be non-empty strings, got {path!r}")
        try:
            modules[path] = model.get_submodule(path)
        except AttributeError as e:
            raise ValueError(f"{type(model).__name__} has no submodule {path!r}") from e

    counter = FlopCounterMode(display=False)
    flops = dict.fromkeys(paths, 0)
    entered: dict[str, list[int]] = {path: [] for path in paths}
    handles = []

    def make_hooks(path: str) -> tuple[Callable[..., None], Callable[..., None]]:
        def pre(_module: torch.nn.Module, _args: Any) -> None:
            entered[path].append(counter.get_total_flops())

        def post(_module: torch.nn.Module, _args: Any, _output: Any) -> None:
            flops[path] += counter.get_total_flops() - entered[path].pop()

        return pre, post

    try:
        for path, module in modules.items():
            pre, post = make_hooks(path)
            handles.append(module.register_forward_pre_hook(pre))
            handles.append(module.register_forward_hook(post))
        with torch.no_grad(), counter:
            forward()
    finally:
        for handle in handles:
            handle.remove()

    total = counter.get_total_flops()
    outermost = [p for p in paths if not any(_is_inside(p, q) for q in paths if q != p)]
    other = total - sum(flops[p] for p in outermost)
    return MacsReport(
        total_macs=total // 2,
        per_module={p: flops[p] // 2 for p in paths},
        other_macs=other // 2,
    )


def _config(unet: torch.nn.Module) -> Mapping[str, Any]:
    config = getattr(unet, "config", None)
    if config is None:
        raise TypeError(f"{type(unet).__name__} has no diffusers config; pass a UNet2DConditionModel")
    return config


def unet2d_example_inputs(
    unet: torch.nn.Module,
    *,
    height: int | None = None,
    width: int | None = None,
    batch_size: int = 1,
    text_len: int = 77,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> dict[str, Any]:
    """Keyword inputs for one call of a diffusers ``UNet2DConditionModel`` (values are zeros/ones).

    ``height``/``width`` are latent sizes (default ``config.sample_size``: 64 for SD 1.5 = 512 px, 128 for
    SDXL = 1024 px). SDXL-style ``addition_embed_type="text_time"`` UNets also get ``added_cond_kwargs``.
    """
    cfg = _config(unet)
    param = next(unet.parameters(), None)
    device = torch.device(device) if device is not None else (param.device if param is not None else None)
    dtype = dtype or (param.dtype if param is not None else torch.float32)
    sample = cfg["sample_size"]
    default_h, default_w = (sample, sample) if isinstance(sample, int) else sample
    h = default_h if height is None else height
    w = default_w if width is None else width
    if batch_size < 1 or text_len < 1 or h < 1 or w < 1:
        raise ValueError(f"sizes must be positive: batch={batch_size}, text_len={text_len}, latent={h}x{w}")
    ctx_dim = cfg.get("encoder_hid_dim") or cfg["cross_attention_dim"]
    if isinstance(ctx_dim, (list, tuple)):
        if len(set(ctx_dim)) != 1:
            raise ValueError(f"per-block cross_attention_dim {ctx_dim} is not supported")
        ctx_dim = ctx_dim[0]
    kw: dict[str, Any] = {"device": device, "dtype": dtype}
    inputs: dict[str, Any] = {
        "sample": torch.zeros(batch_size, cfg["in_channels"], h, w, **kw),
        "timestep": torch.full((batch_size,), 500.0, **kw),
        "encoder_hidden_states": torch.zeros(batch_size, text_len, ctx_dim, **kw),
    }
    if cfg.get("addition_embed_type") == "text_time":
        n_time = 6  # SDXL micro-conditioning: original size, crop top-left, target size
        text_dim = cfg["projection_class_embeddings_input_dim"] - n_time * cfg["addition_time_embed_dim"]
        inputs["added_cond_kwargs"] = {
            "text_embeds": torch.zeros(batch_size, text_dim, **kw),
            "time_ids": torch.ones(batch_size, n_time, **kw),
        }
    elif cfg.get("addition_embed_type") not in (None, "text"):  # "text" only reads encoder_hidden_states
        raise ValueError(f"addition_embed_type {cfg.get('addition_embed_type')!r} is not supported")
    if cfg.get("class_embed_type") is not None or cfg.get("num_class_embeds") is not None:
        raise ValueError("class-conditioned UNets are not supported")
    if cfg.get("time_cond_proj_dim") is not None:
        inputs["timestep_cond"] = torch.zeros(batch_size, cfg["time_cond_proj_dim"], **kw)
    return inputs


def _meta_replica(unet: torch.nn.Module) -> torch.nn.Module:
    from_config = getattr(type(unet), "from_config", None)
    if from_config is None:
        raise TypeError(f"{type(unet).__name__} has no from_config; cannot build a meta replica")
    with torch.device("meta"):
        replica = from_config(dict(_config(unet)))
    return replica.eval()


def unet2d_costs(
    unet: torch.nn.Module,
    *,
    height: int | None = None,
    width: int | None = None,
    batch_size: int = 1,
    text_len: int = 77,
    on_meta: bool = True,
) -> tuple[dict[str, int], int]:
    """MACs of every cacheable block of a UNet2DConditionModel for one call, plus the rest.

    Args:
        unet: The denoiser. With ``on_meta`` (default) a meta-device replica is built from its config and
            costed, so nothing is allocated or computed and the model's own hooks/processors play no part;
            otherwise the model itself runs once on its device with zero inputs.
        height, width: Latent size (default ``config.sample_size``).
        batch_size: Samples per call (1 = per-sample cost; classifier-free guidance doubles it).
        text_len: Text tokens for cross-attention (77 for CLIP).

    Returns:
        ``(macs, other_macs)``: ``macs`` maps every block of
        :func:`cachesearch.models._unet2d.unet2d_layers` (stages and their layers) to its MACs;
        ``other_macs`` is the total minus the stages (``conv_in``, time/added embeddings, ``conv_out``).
    """
    from cachesearch.models._unet2d import unet2d_layers

    model = _meta_replica(unet) if on_meta else unet
    paths = [path for path, _parent, _role, _module in unet2d_layers(model)]
    inputs = unet2d_example_inputs(
        model, height=height, width=width, batch_size=batch_size, text_len=text_len
    )
    report = module_macs(model, lambda: model(**inputs, return_dict=False), paths)
    return report.per_module, report.other_macs
