"""Analytic per-block cost: multiply-accumulates (MACs) of one denoiser call, per module path.

Counts come from :class:`torch.utils.flop_counter.FlopCounterMode`, which applies a formula per aten op
(``mm``/``addmm``/``bmm``/convolutions: ``2*m*n*k`` FLOPs per matmul). MACs are FLOPs / 2.

Attention has **one definition whatever kernel runs**: the two matmuls per head, QKᵀ and AV, i.e.
``batch·heads·L_q·L_k·(d_qk + d_v)`` MACs. torch registers that formula for its CUDA kernels only, so the CPU
flash kernel (and other fused variants) would count zero; every fused scaled-dot-product-attention op is
given the same formula here, and the math fallback decomposes into exactly those two batched matmuls.

Element-wise work (norms, activations, additions, softmax, up-sampling, concatenation) has no formula and
counts zero: the numbers are a noise-free proxy for compute, not a latency model.

Attribution does not use FlopCounterMode's own module table (keyed by ``ClassName.path`` of whichever module
it happens to see first). Instead a forward pre-hook and a forward hook on each requested module read the
counter's running total on entry and exit, so nested paths (a stage and its layers) are each exact, modules
called several times accumulate, and the result does not depend on how ``forward`` reaches the model.

On the ``meta`` device nothing is allocated or computed, so the SD 1.5 / SDXL UNets are costed in well under
a second: build them with ``build_arch_pipeline(name, device="meta", components="unet")``, or let
:func:`unet2d_costs` make a meta replica of any diffusers UNet from its config.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["MacsReport", "attention_flop_mapping", "denoiser_costs", "module_macs", "unet2d_costs"]


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


_SDPA_OPS = (
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_fused_attention_overrideable",
    "_scaled_dot_product_attention_math_for_mps",
)


def _sdpa_flops(query_shape: Sequence[int], key_shape: Sequence[int], value_shape: Sequence[int], *args: Any,
                out_shape: Any = None, **kwargs: Any) -> int:
    """FLOPs of QKᵀ and AV for inputs ``[..., L, d]`` (every leading dim is batch × heads of the query)."""
    *lead, l_q, d_qk = query_shape
    l_k, d_v = key_shape[-2], value_shape[-1]
    heads = 1
    for n in lead:
        heads *= int(n)
    return 2 * heads * int(l_q) * int(l_k) * (int(d_qk) + int(d_v))


def attention_flop_mapping() -> dict[Any, Callable[..., int]]:
    """``FlopCounterMode(custom_mapping=...)`` entries giving every fused attention op one formula."""
    aten = torch.ops.aten
    return {getattr(aten, name): _sdpa_flops for name in _SDPA_OPS if hasattr(aten, name)}


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

    counter = FlopCounterMode(display=False, custom_mapping=attention_flop_mapping())
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


def _meta_replica(denoiser: torch.nn.Module) -> torch.nn.Module:
    from_config = getattr(type(denoiser), "from_config", None)
    config = getattr(denoiser, "config", None)
    if from_config is None or config is None:
        raise TypeError(f"{type(denoiser).__name__} has no diffusers config; cannot build a meta replica")
    from ..adapters._dit import TEXT_TOKENS_ATTR

    with torch.device("meta"):
        replica = from_config(dict(config))
    if getattr(denoiser, TEXT_TOKENS_ATTR, None) is not None:
        setattr(replica, TEXT_TOKENS_ATTR, getattr(denoiser, TEXT_TOKENS_ATTR))
    return replica.eval()


def denoiser_costs(
    denoiser: torch.nn.Module,
    *,
    height: int | None = None,
    width: int | None = None,
    batch_size: int = 1,
    on_meta: bool = True,
    frames: int | None = None,
    text: int | None = None,
) -> tuple[dict[str, int], int]:
    """MACs of every cacheable block of ``denoiser`` for one call, plus the rest, via its family's adapter.

    Args:
        denoiser: The denoiser. With ``on_meta`` (default) a meta-device replica is built from its config and
            costed, so nothing is allocated or computed and the model's own hooks/processors play no part; a model
            that cannot run on meta (ops without a meta kernel: ``nonzero``, ``.item()``, ``bincount``, flex
            attention, ...) runs once on its device instead. Otherwise the model itself runs once on its device
            with zero inputs.
        height, width: Latent size (default: the adapter's, e.g. ``config.sample_size``).
        batch_size: Samples per call (1 = per-sample cost; classifier-free guidance doubles it).
        frames, text: Latent frames and text tokens of a transformer's call (default: its example inputs').

    Returns:
        ``(macs, other_macs)``: ``macs`` maps every block of the adapter's block space (stages and their
        layers) to its MACs; ``other_macs`` is the total minus the stages (embeddings, input/output layers).
    """
    from ..adapters import adapter_for
    from ..schedule import ScheduleError

    adapter = adapter_for(denoiser)
    sizes = {k: v for k, v in (("frames", frames), ("text", text)) if v is not None}
    if on_meta:
        try:
            return _costs(adapter, _meta_replica(denoiser), height, width, batch_size, sizes)
        except (NotImplementedError, RuntimeError, ValueError, AssertionError):
            pass  # an op without a meta kernel: cost one real call below
    try:
        return _costs(adapter, denoiser, height, width, batch_size, sizes)
    except (NotImplementedError, RuntimeError, TypeError, AssertionError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ScheduleError(
            f"cannot count the MACs of {type(denoiser).__name__}: torch's FlopCounterMode failed on one call "
            f"({type(e).__name__}: {first[:160]}); analytic cost ratios need them"
        ) from e


def _costs(adapter: Any, model: torch.nn.Module, height: int | None, width: int | None, batch_size: int,
           sizes: dict[str, int]) -> tuple[dict[str, int], int]:
    from ..schedule import BlockKind

    space = adapter.block_space(model)
    paths = list(space.names()) + list(space.names(BlockKind.COMPONENT))
    inputs = adapter.example_inputs(model, height=height, width=width, batch_size=batch_size, **sizes)
    with _meta_safe(model):
        report = module_macs(model, lambda: model(**inputs, return_dict=False), paths)
    return report.per_module, report.other_macs


@contextlib.contextmanager
def _meta_safe(model: torch.nn.Module) -> Iterator[None]:
    """Run on the meta device what reads tensor values (instance patches, removed on exit; nothing changes for a
    model on a real device). HiDream-I1 is the one such model:

    * its mixture-of-experts layers (``moe_infer``) dispatch each token to its top-k experts with ``bincount``:
      every token still visits exactly k experts and an expert's MACs are linear in its tokens, so the
      ``tokens × k`` rows are split evenly over the experts, which counts exactly the MACs of any routing;
    * ``patchify`` returns the patch grid as a tensor that ``unpatchify`` reads back with ``.item()``: the same
      sizes are returned as Python ints."""
    if next(model.parameters(), torch.empty(0)).device.type != "meta":
        yield
        return
    patched: list[tuple[torch.nn.Module, str]] = []
    for module in model.modules():
        if not callable(getattr(module, "moe_infer", None)):
            continue
        experts, k = getattr(module, "experts", None), getattr(module, "num_activated_experts", None)
        if isinstance(experts, torch.nn.ModuleList) and k:

            def even(x: torch.Tensor, *_: Any, experts: torch.nn.ModuleList = experts, k: int = int(k)) -> torch.Tensor:
                rows, n = x.shape[0] * k, len(experts)
                for i, expert in enumerate(experts):
                    expert(x.new_empty(rows // n + (1 if i < rows % n else 0), x.shape[-1]))
                return torch.zeros_like(x)

            module.moe_infer = even
            patched.append((module, "moe_infer"))
    if callable(getattr(model, "patchify", None)) and callable(getattr(model, "unpatchify", None)):
        original, p = model.patchify, int(model.config.patch_size)

        def patchify(hidden_states: torch.Tensor) -> tuple:
            out = original(hidden_states)
            b, _, h, w = hidden_states.shape
            return (out[0], out[1], [(h // p, w // p)] * b, out[3])

        model.patchify = patchify
        patched.append((model, "patchify"))
    try:
        yield
    finally:
        for module, name in patched:
            delattr(module, name)


def unet2d_costs(
    unet: torch.nn.Module,
    *,
    height: int | None = None,
    width: int | None = None,
    batch_size: int = 1,
    on_meta: bool = True,
) -> tuple[dict[str, int], int]:
    """:func:`denoiser_costs` of a UNet2DConditionModel (refuses other families)."""
    from ..adapters import family_of

    if family_of(unet) != "unet2d":
        raise TypeError(f"{type(unet).__name__} is not a UNet2D denoiser")
    return denoiser_costs(unet, height=height, width=width, batch_size=batch_size, on_meta=on_meta)
