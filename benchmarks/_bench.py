"""Shared pieces of the latency benchmarks: build a pipeline, time a configuration, write results."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import platform
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

import cachesearch as cs
from cachesearch.evaluate import device_description, measure_latency, peak_memory

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = RESULTS.parent.parent


def repo_relative(path: str | Path) -> str:
    """``path`` relative to the repository when inside it, else its name (results carry no machine paths)."""
    p = Path(path).expanduser().resolve()
    return p.relative_to(ROOT).as_posix() if p.is_relative_to(ROOT) else p.name


def environment(device: str) -> dict[str, Any]:
    """Versions and device, recorded with every result file."""
    import diffusers

    try:
        from importlib.metadata import version

        import DeepCache  # noqa: F401

        deepcache_version = version("DeepCache")
    except Exception:  # noqa: BLE001 - optional
        deepcache_version = None
    return {
        "date": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "device": device_description(device),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "diffusers": diffusers.__version__,
        "cachesearch": cs.__version__,
        "DeepCache": deepcache_version,
        "torch_threads": torch.get_num_threads(),
    }


@contextlib.contextmanager
def official_deepcache(pipe: Any, interval: int, branch: int) -> Iterator[None]:
    """The official DeepCache helper enabled on ``pipe`` (instance forwards restored afterwards)."""
    from DeepCache.extension.deepcache import DeepCacheSDHelper

    helper = DeepCacheSDHelper(pipe=pipe)
    helper.set_params(cache_interval=interval, cache_branch_id=branch)
    helper.enable()
    try:
        yield
    finally:
        helper.disable()
        for m in pipe.unet.modules():  # the helper re-assigns bound methods; drop them to restore exactly
            m.__dict__.pop("forward", None)


@contextlib.contextmanager
def nothing() -> Iterator[None]:
    yield


def make_call(pipe: Any, *, prompt: str, steps: int, guidance: float, batch: int, size: int,
              output_type: str = "pil") -> Callable[[], Any]:
    """A zero-argument pipeline call with fixed noise (seed 0)."""

    def call() -> Any:
        g = torch.Generator(device="cpu").manual_seed(0)
        return pipe([prompt] * batch, num_inference_steps=steps, guidance_scale=guidance, height=size, width=size,
                    generator=g, output_type=output_type)

    return call


def time_config(ctx: Callable[[], contextlib.AbstractContextManager], call: Callable[[], Any], *, device: str,
                warmup: int, repeats: int) -> dict[str, Any]:
    """Median/spread/peak memory of ``call`` inside ``ctx()``."""
    with ctx():
        stats = measure_latency(call, warmup=warmup, repeats=repeats, device=device)
        peak = peak_memory(call, device=device) if device.startswith("cuda") else None
    out = stats.to_dict()
    out["peak_memory_bytes"] = peak
    return out


def outputs_match(pipe: Any, ctx_a: Callable, ctx_b: Callable, call_pt: Callable[[], Any], atol: float) -> dict:
    """Max abs difference of two configurations' images (same noise)."""
    with ctx_a():
        a = call_pt().images
    with ctx_b():
        b = call_pt().images
    diff = float((a.float() - b.float()).abs().max())
    return {"max_abs_diff": diff, "atol": atol, "equal_within_atol": diff <= atol}


def write_results(name: str, payload: dict[str, Any]) -> Path:
    return write_json(RESULTS / f"{name}.json", payload)


def write_json(path: str | Path, payload: dict[str, Any], *, indent: int = 2) -> Path:
    """Write ``payload`` as JSON (non-finite floats and odd objects as strings), creating folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=indent, default=str) + "\n", encoding="utf-8")
    return path


def write_and_say(path: Path, payload: dict[str, Any]) -> None:
    """:func:`write_json` (indent 1) and print where, relative to the working folder when inside it."""
    write_json(path, payload, indent=1)
    print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")


MODEL_SPECS = {"sd15": "arch:sd15", "sdxl": "arch:sdxl"}
DEFAULT_SIZE = {"arch:sd15": 512, "arch:sdxl": 1024}


def model_spec(name: str) -> str:
    """``sd15``/``sdxl`` → ``arch:…``; other specs (``embedded``, ``arch:sd15``, a folder) unchanged."""
    return MODEL_SPECS.get(name, name)


def load_pipe(spec: str, device: str) -> Any:
    """The pipeline of ``spec`` (fp16 on CUDA, fp32 elsewhere), progress bars off."""
    from diffusers.utils import logging as diffusers_logging

    from cachesearch.models import load_model

    diffusers_logging.set_verbosity_error()  # e.g. the tiny model's 16-token CLIP truncating the prompt
    diffusers_logging.disable_progress_bar()
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    pipe = load_model(model_spec(spec), device=device, dtype=dtype).pipe
    pipe.set_progress_bar_config(disable=True)
    return pipe


def default_size(spec: str, pipe: Any) -> int:
    """512 px for SD1.5, 1024 px for SDXL, else the UNet's native size."""
    spec = model_spec(spec)
    if spec in DEFAULT_SIZE:
        return DEFAULT_SIZE[spec]
    return int(pipe.unet.config.sample_size) * int(getattr(pipe, "vae_scale_factor", 8))


SCHEDULERS = ("default", "ddim", "pndm", "euler")


def set_scheduler(pipe: Any, name: str, original: Any = None) -> str:
    """Put scheduler ``name`` on ``pipe`` (built from ``original``'s config, default the current one); return
    its class name. ``default`` restores ``original`` itself."""
    from diffusers import DDIMScheduler, EulerDiscreteScheduler, PNDMScheduler

    original = original if original is not None else pipe.scheduler
    if name == "default":
        pipe.scheduler = original
    else:
        cls = {"ddim": DDIMScheduler, "pndm": PNDMScheduler, "euler": EulerDiscreteScheduler}[name]
        extra = {"skip_prk_steps": True} if name == "pndm" else {}  # SD's PLMS-only PNDM (N+1 calls)
        pipe.scheduler = cls.from_config(original.config, **extra)
    return type(pipe.scheduler).__name__


def table(rows: list[dict[str, Any]], cols: list[tuple[str, str]]) -> str:
    """A GitHub-markdown table of ``rows`` with (key, header) columns."""
    head = "| " + " | ".join(h for _, h in cols) + " |"
    sep = "|" + "|".join("---" for _ in cols) + "|"
    lines = [head, sep]
    for r in rows:
        cells = []
        for k, _ in cols:
            v = r.get(k)
            cells.append(f"{v:.3f}" if isinstance(v, float) else "" if v is None else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
