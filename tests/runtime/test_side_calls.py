"""Pipelines that call the denoiser beside the sampler steps to fill a KV cache, run for real on tiny random weights:

* Wan-Animate 2: diffusers' modular segment loop (``WanAnimate2CoreDenoiseStep``: geometry, then per segment VAE
  encoding, ``set_timesteps``, the reference pass ``kv_cache_mode="extract"``, a cond and an uncond pass per step
  told apart by ``is_uncondtion``, VAE decoding). The encoders before it (UMT5, CLIP vision, video preprocessing) are
  not run: their outputs are inputs of the step, given as tensors.
* SANA-WM's refiner: ``SanaWMLTX2Refiner.__call__`` (``set_timesteps``, the sink capture ``"capture_pre_rope"``, per
  chunk ``set_timesteps``, one ``"inject"`` call per step and the chunk capture ``"inject_and_capture_post_rope"``).
  Only its prompt encoding is replaced by fixed embeddings (Gemma-3's tokenizer cannot be built offline).

Checks: a leaf Linear inside each masked block runs in every side call and in each step call exactly at its branch's
R steps (steps counted per segment / chunk); an all-R schedule is bit-identical; and a caching schedule on the
pipeline equals, bit for bit, the same schedule applied to a transformer that never sees the side calls (an
unhooked copy of the same weights makes them).
"""

from __future__ import annotations

import functools

import pytest
import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler
from diffusers.guiders import ClassifierFreeGuidance
from diffusers.modular_pipelines.wan_animate_2.modular_blocks_wan_animate_2 import WanAnimate2CoreDenoiseStep
from diffusers.pipelines.sana_wm.refiner import SanaWMLTX2Refiner

import cachesearch as cs
from cachesearch.models._presets_wan import tiny_wan_configs
from tests._tiny_dit import watch_linear
from tests.adapters._zoo import build, uncompiled_block_mask

STEPS = 3
ANIMATE, REFINER = "WanAnimate2Transformer3DModel", "SanaWMLTX2RefinerTransformer3DModel"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _animate_model():
    model = build(ANIMATE)
    uncompiled_block_mask(model, frames=3, height=4, width=4)  # 32 x 32 px, 5-frame segments (the inputs below)
    return model


def animate_pipe(transformer):
    """The modular segment loop with a tiny 16-channel Wan VAE (8x in space, 4x in time)."""
    pipe = WanAnimate2CoreDenoiseStep().init_pipeline()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vae = AutoencoderKLWan(**tiny_wan_configs()["vae"]).eval()
    pipe.update_components(transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                           guider=ClassifierFreeGuidance(guidance_scale=3.0))
    return pipe


def animate(pipe):
    """Two 5-frame segments (one frame of overlap) of a 9-frame driving clip at 32 x 32 px, CFG with two passes."""
    g = torch.Generator().manual_seed(0)
    data = {"reference_image_latents": torch.randn(20, 1, 4, 4, generator=g),
            "driving_video_pixels": torch.rand(1, 3, 9, 32, 32, generator=g) * 2 - 1,
            "condition_clip_context": torch.randn(1, 4, 1280, generator=g),
            "prompt_ref_embeds": torch.randn(1, 8, 32, generator=g),
            "prompt_embeds": torch.randn(1, 8, 32, generator=g),
            "negative_prompt_embeds": torch.randn(1, 8, 32, generator=g),
            "denoiser_input_fields": {"encoder_hidden_states_image": torch.randn(1, 4, 1280, generator=g)}}
    frames = pipe(**data, segment_frame_length=5, num_segments=2, effective_segment=4,
                  prev_segment_conditioning_frames=1, num_inference_steps=STEPS, height=32, width=32,
                  generator=torch.Generator().manual_seed(1), output="segment_frames")
    return torch.cat([f.flatten() for f in frames])


def refiner_pipe(transformer):
    pipe = SanaWMLTX2Refiner(transformer=transformer, connectors=None, tokenizer=None, text_encoder=None,
                             scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0))
    g = torch.Generator().manual_seed(0)
    embeds, mask = torch.randn(1, 8, 16, generator=g), torch.ones(1, 8)
    pipe._encode_prompt = lambda prompt, *, device, dtype: (embeds, mask)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def refine(pipe):
    """A sink frame and 7 frames in chunks of 3, 3, 1, a window of 5 frames (the history is trimmed)."""
    latent = torch.randn(1, 4, 8, 4, 4, generator=torch.Generator().manual_seed(2))
    return pipe(latent, "a prompt", fps=24.0, generator=torch.Generator().manual_seed(3), block_size=3,
                kv_max_frames=5, output_type="latent").flatten()


CASES = {ANIMATE: (_animate_model, animate_pipe, animate), REFINER: (lambda: build(REFINER), refiner_pipe, refine)}


class Calls:
    """Every transformer call's ``kv_cache_mode`` and ``is_uncondtion``, and per call the masked blocks whose first
    Linear ran (counted where the leaf computes: ``F.linear`` with its weight)."""

    def __init__(self, model, names, monkeypatch):
        self.calls: list[tuple] = []
        self.ran: list[set[str]] = []
        self.hook = model.register_forward_pre_hook(self._call, with_kwargs=True)
        monkeypatch.setattr(torch.nn.functional, "linear",
                            watch_linear({n: model.get_submodule(n) for n in names}, lambda n: self.ran[-1].add(n)))

    def _call(self, module, args, kwargs):
        self.calls.append((kwargs.get("kv_cache_mode"), kwargs.get("is_uncondtion")))
        self.ran.append(set())


SIDE = {"extract", "capture_pre_rope", "inject_and_capture_post_rope"}


@pytest.mark.parametrize("name", [ANIMATE, REFINER])
def test_side_calls_run_every_block_and_steps_follow_their_branch_rows(name, monkeypatch):
    make, pipe_of, run = CASES[name]
    model = make()
    pipe = pipe_of(model)
    blocks = [n for n in ("blocks.0", "blocks.1.ffn", "transformer_blocks.0", "transformer_blocks.1.ff")
              if n.split(".")[0] in dict(model.named_children())]
    masks = {blocks[0]: {"cond": "R.R", "uncond": "RR."} if name == ANIMATE else "R.R", blocks[1]: "RR."}
    sched = cs.compile_schedule(pipe, cs.BlockMask(masks), num_inference_steps=STEPS)
    calls = Calls(model, blocks, monkeypatch)
    with sched.applied(pipe):
        out = run(pipe)
    calls.hook.remove()
    monkeypatch.undo()
    assert torch.isfinite(out).all()
    kinds = [mode for mode, _ in calls.calls]
    expected_side = 2 if name == ANIMATE else 4  # a reference pass per segment; the sink and one capture per chunk
    assert sum(k in SIDE for k in kinds) == expected_side and len(kinds) == expected_side + (
        2 * 2 * STEPS if name == ANIMATE else 3 * STEPS), kinds
    step = {}
    for (mode, uncond), ran in zip(calls.calls, calls.ran):
        if mode in SIDE:
            assert ran == set(blocks), (mode, ran)  # every block writes its part of the KV cache
            step = {}  # the next steps belong to a new segment / chunk (set_timesteps starts them over)
            continue
        branch = "uncond" if uncond else "cond"
        s = step[branch] = step.get(branch, -1) + 1
        want = {b for b in blocks if sched.masks(branch)[b][s] == "R"}
        assert ran == want, (mode, branch, s, ran)


@pytest.mark.parametrize("name", [ANIMATE, REFINER])
def test_all_recompute_is_bit_identical_on_the_pipeline(name):
    make, pipe_of, run = CASES[name]
    pipe = pipe_of(make())
    base = run(pipe)
    for policy in (cs.Full(), cs.TaylorSeer(interval=1, warmup=0)):
        with cs.compile_schedule(pipe, policy, num_inference_steps=STEPS).applied(pipe):
            assert torch.equal(run(pipe), base)


class _Router(torch.nn.Module):
    """The pipeline's transformer for the reference runs: side calls go to ``twin`` (no schedule), steps to
    ``inner`` (the schedule applied to it as a bare denoiser, which counts its steps per loop by itself)."""

    def __init__(self, inner, twin):
        super().__init__()
        self.inner, self.twin = inner, twin

        @functools.wraps(type(inner).forward)  # the pipelines read the transformer's signature
        def forward(*args, **kwargs):
            return (twin if kwargs.get("kv_cache_mode") in SIDE else inner)(*args, **kwargs)

        self.forward = forward

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.inner, name)


@pytest.mark.parametrize("name", [ANIMATE, REFINER])
@pytest.mark.parametrize("policy", ["taylor", "mask"])
def test_caching_on_the_pipeline_equals_a_transformer_that_never_sees_the_side_calls(name, policy):
    make, pipe_of, run = CASES[name]
    model = make()
    pipe = pipe_of(model)
    if policy == "taylor":  # a Taylor forecast differences every stored output: a stored side call would show
        rule = cs.TaylorSeer(interval=2, warmup=1, order=1)
    else:
        stages = [n for n in ("blocks.0", "blocks.1", "transformer_blocks.0", "transformer_blocks.1")
                  if n.split(".")[0] in dict(model.named_children())]
        rule = cs.BlockMask({stages[0]: "R.R", stages[1]: {"cond": "RR.", "uncond": "R.R"} if name == ANIMATE
                             else "RR."})
    sched = cs.compile_schedule(pipe, rule, num_inference_steps=STEPS)
    with sched.applied(pipe):
        ours = run(pipe)
    twin = make()
    twin.load_state_dict(model.state_dict())
    reference = pipe_of(_Router(model, twin))
    with sched.applied(model):
        theirs = run(reference)
    assert torch.equal(ours, theirs)
    assert not torch.equal(ours, run(pipe_of(model)))  # the schedule did cache
