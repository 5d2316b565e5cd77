"""Every diffusers transformer class of the coverage table, at a tiny random configuration (:mod:`tests.adapters._zoo`),
through the generic adapter (or its family's): the same checks for each.

* the blocks and components found are real modules, listed in the order they run;
* every block's and component's registered output layout matches what it returns (hidden input found, residual
  outputs of the input's shape, the text stream where the layout names one);
* an all-R schedule is bit-identical; ``remove()`` restores the model exactly;
* a block (and a component) the mask skips really does not run: a Linear inside it, counted by a forward hook on
  that leaf module, runs only on the mask's R steps;
* residual and taylor reuse run (finite outputs that differ from the uncached ones).

A bare transformer runs a hand-written loop of ``STEPS`` calls (one per step; the timestep set per step, the latent
updated where the output has its shape), on inputs built by the adapter from a seeded generator.
"""

from __future__ import annotations

import pytest
import torch

import cachesearch as cs
from cachesearch.adapters import adapter_for, block_io_of
from cachesearch.models import denoiser_costs
from cachesearch.schedule import BlockKind
from tests._tiny_dit import watch_linear
from tests.adapters._zoo import TINY, build, inputs_of, sample
from tests.adapters.families import NO_MACS

STEPS = 4
CLASSES = sorted(TINY)
NO_LAYOUT = {"ErnieImageSharedAdaLNBlock"}  # sequence-first blocks (adapters/_layouts.py)


class _Zoo(dict):
    """Each class's tiny model and its uncached output, built on first use."""

    def __missing__(self, name: str) -> tuple[torch.nn.Module, torch.Tensor]:
        model = build(name)
        self[name] = (model, sample(model, name))
        return self[name]


@pytest.fixture(scope="module")
def zoo() -> _Zoo:
    torch.set_num_threads(1)
    return _Zoo()


def _unhooked(model: torch.nn.Module) -> bool:
    return all("forward" not in m.__dict__ for m in model.modules())


@pytest.mark.parametrize("name", CLASSES)
def test_blocks_and_components_are_found_in_the_order_they_run(zoo, name):
    model, _ = zoo[name]
    space = adapter_for(model).block_space(model)
    stages = space.names(BlockKind.STAGE)
    comps = space.names(BlockKind.COMPONENT)
    assert stages and comps, name
    order: list[str] = []
    handles = [model.get_submodule(n).register_forward_pre_hook(lambda m, a, n=n: order.append(n))
               for n in stages + comps]
    try:
        with torch.no_grad():
            model(**inputs_of(model, name), return_dict=False)
    finally:
        for h in handles:
            h.remove()
    assert order == [b.name for b in space.blocks], name  # every one runs once per call, in the listed order


@pytest.mark.parametrize("name", CLASSES)
def test_registered_output_layouts_match_what_blocks_return(zoo, name):
    model, _ = zoo[name]
    space = adapter_for(model).block_space(model)
    names = space.names(BlockKind.STAGE) + space.names(BlockKind.COMPONENT)
    seen: dict[str, tuple] = {}

    def record(n: str):
        def hook(module, args, kwargs, out):
            seen.setdefault(n, (args, kwargs, out))  # the first call (a hook returning a value would replace it)
        return hook

    handles = [model.get_submodule(n).register_forward_hook(record(n), with_kwargs=True) for n in names]
    try:
        with torch.no_grad():
            model(**inputs_of(model, name), return_dict=False)
    finally:
        for h in handles:
            h.remove()
    unregistered = set()
    for n in names:
        args, kwargs, out = seen[n]
        try:
            io = block_io_of(model.get_submodule(n), path=n)
        except cs.ScheduleError:
            unregistered.add(type(model.get_submodule(n)).__name__)
            continue
        x, y = io.hidden_input(args, kwargs), io.hidden_output(out)
        assert x is not None, n
        if space.get(n).residual_ok:
            assert y.shape == x.shape, n
        enc = io.encoder_output(out)
        if enc is not None:
            assert io.encoder_input(args, kwargs) is not None and enc.shape == io.encoder_input(args, kwargs).shape, n
    assert unregistered <= NO_LAYOUT, unregistered


@pytest.mark.parametrize("name", CLASSES)
def test_all_recompute_is_bit_identical_and_remove_is_exact(zoo, name):
    model, base = zoo[name]
    space = adapter_for(model).block_space(model)
    every = {n: "R" * STEPS for n in space.names(BlockKind.COMPONENT)}
    for policy in (cs.Full(), cs.BlockMask(every)):
        with cs.compile_schedule(model, policy, num_inference_steps=STEPS).applied(model):
            assert torch.equal(sample(model, name), base), name
    stages = space.names(BlockKind.STAGE)
    sched = cs.compile_schedule(model, cs.BlockMask(dict.fromkeys(stages, "R.R" + "." * (STEPS - 3))),
                                num_inference_steps=STEPS)
    handle = sched.apply(model)
    cached = sample(model, name)
    handle.remove()
    handle.remove()  # idempotent
    assert _unhooked(model) and torch.equal(sample(model, name), base), name
    assert torch.isfinite(cached).all() and not torch.equal(cached, base), name


@pytest.mark.parametrize("name", CLASSES)
def test_skipped_blocks_and_components_really_do_not_run(zoo, name, monkeypatch):
    """Counted where the leaf computes (``F.linear`` with its weight): a hook on a wrapped module itself (FLUX's
    ``proj_out`` is a Linear) would count calls of the wrapper, reused or not."""
    model, _ = zoo[name]
    space = adapter_for(model).block_space(model)
    stages = space.names(BlockKind.STAGE)
    block = stages[0]
    component = space.children(stages[-1])[-1]  # in another block where there are two
    masks = {block: "R.R.", component: "RR.."}
    runs = dict.fromkeys(masks, 0)
    # a Linear the block's own forward runs (in its first component where it has one): DiT's model also calls
    # transformer_blocks[0].norm1.emb itself for the final layer's conditioning
    leaves = {n: (model.get_submodule(space.children(n)[0]) if space.children(n) else model.get_submodule(n))
              for n in masks}

    def ran(n):
        runs[n] += 1

    monkeypatch.setattr(torch.nn.functional, "linear", watch_linear(leaves, ran))
    sample(model, name)
    per_step = {n: runs[n] // STEPS for n in masks}  # a leaf may run more than once per block call
    assert all(per_step[n] >= 1 and runs[n] == per_step[n] * STEPS for n in masks), runs
    runs.update(dict.fromkeys(masks, 0))
    with cs.compile_schedule(model, cs.BlockMask(masks), num_inference_steps=STEPS).applied(model):
        sample(model, name)
    monkeypatch.undo()
    assert runs == {n: per_step[n] * m.count("R") for n, m in masks.items()}, name


def _residual_targets(model: torch.nn.Module, space) -> tuple[str, ...]:
    """The blocks where every block has a registered layout (ERNIE-Image's have none: sequence-first), else the
    components whose output has their input's shape."""
    stages = space.names(BlockKind.STAGE)
    try:
        for n in stages:
            block_io_of(model.get_submodule(n), path=n)
    except cs.ScheduleError:
        return tuple(c for c in space.names(BlockKind.COMPONENT) if space.get(c).residual_ok)
    return stages


@pytest.mark.parametrize("name", CLASSES)
def test_residual_and_taylor_reuse_run(zoo, name):
    model, base = zoo[name]
    space = adapter_for(model).block_space(model)
    stages = space.names(BlockKind.STAGE)
    residual = cs.compile_schedule(model, cs.BlockMask(dict.fromkeys(_residual_targets(model, space), "RR.R")),
                                   num_inference_steps=STEPS, reuse="residual")
    attention = space.attention_components()
    taylor = cs.compile_schedule(model, cs.TaylorSeer(interval=2, warmup=1, order=1,
                                                      blocks=list(attention or stages)), num_inference_steps=STEPS)
    assert "." in "".join(taylor.masks().values())
    for sched in (residual, taylor):
        with sched.applied(model):
            out = sample(model, name)
        assert torch.isfinite(out).all() and not torch.equal(out, base), (name, sched.reuse)
    assert _unhooked(model)


@pytest.mark.parametrize("name", [n for n in CLASSES if n not in NO_MACS])
def test_costs_add_up_at_both_granularities(zoo, name):
    """MACs of one call per block and component (a meta replica where the model runs on meta, else one real call)
    add up to the model's total; every block and component costs something and a block includes its components."""
    model, _ = zoo[name]
    tiny = TINY[name]
    macs, other = denoiser_costs(model, height=tiny.height, width=tiny.width, frames=tiny.frames, text=tiny.text)
    space = adapter_for(model).block_space(model, macs=macs, other_macs=other)
    stages = space.names(BlockKind.STAGE)
    assert all(space.get(n).macs > 0 for n in stages + space.names(BlockKind.COMPONENT)), name
    for n in stages:
        assert sum(space.get(c).macs for c in space.children(n)) <= space.get(n).macs, n
    assert 0 < space.cost_ratio({stages[0]: "R."}, 2) < 1


@pytest.mark.parametrize("name", sorted(NO_MACS))
def test_models_whose_macs_cannot_be_counted_say_so_in_one_line(zoo, name):
    model, _ = zoo[name]
    tiny = TINY[name]
    with pytest.raises(cs.ScheduleError, match=f"^cannot count the MACs of {name}: torch's FlopCounterMode") as info:
        denoiser_costs(model, height=tiny.height, width=tiny.width, frames=tiny.frames, text=tiny.text)
    assert "\n" not in str(info.value)
