"""A minimal flow-matching pipeline around a bare transformer, for search tests on families without a tiny
pipeline. Test-only.

It is a ``DiffusionPipeline`` (components, progress bar, ``scheduler.set_timesteps`` as every diffusers pipeline
calls it) that runs one transformer call per step on the adapter's example inputs (:mod:`cachesearch.adapters`),
drawn per image from that image's generator, so image ``i`` depends only on its seed. Its "image" is the final
latent seen as a ``[3, height, width]`` picture (a sigmoid of its first values): a deterministic function of the
latent, which is all the search machinery needs; quality numbers mean nothing (random weights).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler

from cachesearch.adapters import adapter_for, example_for
from tests.adapters._zoo import TINY, build

__all__ = ["BareTransformerPipeline", "bare_pipeline"]


class BareTransformerPipeline(DiffusionPipeline):
    """Flow-matching Euler over a bare transformer at its tiny configuration's sizes (``vae_scale_factor`` 1)."""

    def __init__(self, transformer: torch.nn.Module, scheduler: FlowMatchEulerDiscreteScheduler) -> None:
        super().__init__()
        self.register_modules(transformer=transformer, scheduler=scheduler)
        self.vae_scale_factor = 1
        self._cachesearch_random_weights = True

    def _sample(self, generator: torch.Generator, num_inference_steps: int, callback: Any) -> torch.Tensor:
        model = self.transformer
        tiny = TINY[type(model).__name__]
        example = example_for(model)
        inputs = adapter_for(model).example_inputs(model, height=tiny.height, width=tiny.width, frames=tiny.frames,
                                                   text=tiny.text, generator=generator)
        x, t0 = inputs[example.latent], inputs[example.timestep]
        self.scheduler.set_timesteps(num_inference_steps)
        for i, t in enumerate(self.scheduler.timesteps):
            inputs[example.latent] = x
            inputs[example.timestep] = torch.full_like(t0, float(t) / 1000 * example.timestep_scale)
            out = model(**inputs, return_dict=False)[0]
            if isinstance(x, list):  # per-sample latents (Z-Image)
                x = [a - o / num_inference_steps if o.shape == a.shape else a for a, o in zip(x, out)]
            elif out.shape == x.shape:
                x = self.scheduler.step(out, t, x, return_dict=False)[0]
            if callback is not None:
                callback(self, i, t, {"latents": torch.stack(x) if isinstance(x, list) else x})
        return torch.cat([a.flatten() for a in x]) if isinstance(x, list) else x.flatten()

    @torch.no_grad()
    def __call__(self, prompt: str | list[str], *, height: int, width: int, num_inference_steps: int = 4,
                 generator: torch.Generator | list[torch.Generator] | None = None, output_type: str = "pt",
                 callback_on_step_end: Any = None, **_: Any) -> SimpleNamespace:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        gens = generator if isinstance(generator, list) else [generator or torch.Generator().manual_seed(0)] * len(
            prompts)
        images = []
        for gen in gens:
            v = self._sample(gen, num_inference_steps, callback_on_step_end).float()
            n = 3 * height * width
            images.append(torch.sigmoid(v.repeat(-(-n // v.numel()))[:n]).view(3, height, width))
        return SimpleNamespace(images=torch.stack(images))


def bare_pipeline(name: str, seed: int = 0, **overrides: Any) -> BareTransformerPipeline:
    """The bare pipeline of the tiny transformer of class ``name`` (``overrides``: configuration entries)."""
    pipe = BareTransformerPipeline(build(name, seed, **overrides), FlowMatchEulerDiscreteScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe
