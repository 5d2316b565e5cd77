"""The ``taylor`` reuse mode: diffusers' TaylorSeer arithmetic for any block, tuple outputs, no host sync, the
schedule IR and file format @3, and how policies choose it."""

from __future__ import annotations

import pytest
import torch
import yaml
from diffusers.hooks.taylorseer_cache import TaylorSeerState

import cachesearch as cs
from cachesearch.runtime import fingerprint_module
from cachesearch.runtime._table import REUSE, RUN, STORE, _actions
from cachesearch.runtime._taylor import taylor_forecast, taylor_update, tree_leaves
from cachesearch.schedule import BlockEntry, ModelInfo, SamplerInfo, Schedule, dump_schedule, parse_schedule
from tests._tiny import tiny_sd_pipeline


@pytest.mark.parametrize("order", [1, 2])
def test_update_and_forecast_are_diffusers_taylorseer_state(order):
    """Same recomputes (uneven spacing) and forecasts as ``TaylorSeerState`` with float32 factors."""
    g = torch.Generator().manual_seed(0)
    theirs = TaylorSeerState(taylor_factors_dtype=torch.float32, max_order=order)
    ours = None
    recomputes = {0, 1, 2, 4, 7}  # uneven; forecasts at 3, 5, 6, 8, 9
    for step in range(10):
        theirs.current_step = step
        if step in recomputes:
            out = (torch.randn(2, 3, generator=g), torch.randn(4, generator=g))
            theirs.update(out)
            ours = taylor_update(ours, out, step, order)
        else:
            expected = theirs.predict()
            got = taylor_forecast(ours, step)
            assert isinstance(got, tuple) and len(got) == 2
            for a, b in zip(got, expected):
                assert torch.equal(a, b), step
    assert len(ours[1][0]) == order + 1  # F0..F_order after enough recomputes


def test_forecast_keeps_the_output_structure_and_non_tensors():
    out = (None, torch.ones(2), [torch.zeros(1), 3])
    state = taylor_update(None, out, 0, 2)
    state = taylor_update(state, (None, torch.full((2,), 3.0), [torch.ones(1), 3]), 2, 2)
    got = taylor_forecast(state, 3)  # y(2) + (y(2) - y(0)) / 2 * 1
    assert got[0] is None and got[2][1] == 3
    assert torch.equal(got[1], torch.full((2,), 4.0)) and torch.equal(got[2][0], torch.full((1,), 1.5))
    assert len(tree_leaves(out)) == 2
    assert taylor_update(state, out, 2, 2) is state  # a second call at the same step keeps the step's factors


def test_every_recompute_before_the_last_reuse_stores():
    assert _actions("RR.RRR.R") == [RUN, STORE, REUSE, RUN, RUN, STORE, REUSE, RUN]
    assert _actions("RR.RRR.R", every_recompute=True) == [STORE, STORE, REUSE, STORE, STORE, STORE, REUSE, RUN]


class _Pair(torch.nn.Module):
    """A block that returns a pair, like FLUX's attention."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(3, 3)
        self.b = torch.nn.Linear(3, 3)

    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.a(hidden_states), self.b(hidden_states)


def _toy(order: int, mask: str = "RRR.R..") -> tuple[torch.nn.Module, Schedule]:
    net = torch.nn.Module()
    net.blk = _Pair()
    net.forward = lambda x: net.blk(x)
    sched = Schedule(
        name="taylor-toy",
        model=ModelInfo(family="unet2d", cls="Module", fingerprint=fingerprint_module(net), source="test"),
        sampler=SamplerInfo(scheduler="none", num_inference_steps=len(mask)),
        blocks=(BlockEntry(block="blk", cond=mask, uncond=mask),),
        reuse="taylor",
        taylor_order=order,
        policy={"kind": "blockmask"},
    )
    return net, sched


def _run_refusing_host_reads(net, sched, xs, monkeypatch):
    """The bare block's exact outputs, and the net's under ``sched`` with every host read of a tensor refused."""
    with torch.no_grad():
        exact = [net.blk(x) for x in xs]

        def refuse(*_a, **_k):
            raise AssertionError("the runtime synchronised with the device")

        with sched.applied(net):
            for name in ("item", "tolist", "numpy", "__bool__", "cpu"):
                monkeypatch.setattr(torch.Tensor, name, refuse)
            outs = [net(x) for x in xs]
            monkeypatch.undo()
    return exact, outs


@pytest.mark.parametrize("order", [1, 2])
def test_a_bare_module_forecasts_tuple_outputs_without_syncing_the_host(order, monkeypatch):
    net, sched = _toy(order)
    xs = [torch.full((1, 3), float(s)) for s in range(7)]
    exact, outs = _run_refusing_host_reads(net, sched, xs, monkeypatch)
    state = None
    for s, ch in enumerate(sched.blocks[0].cond):
        if ch == "R":
            assert torch.equal(outs[s][0], exact[s][0]) and torch.equal(outs[s][1], exact[s][1])
            state = taylor_update(state, exact[s], s, order)
        else:
            want = taylor_forecast(state, s)
            assert torch.equal(outs[s][0], want[0]) and torch.equal(outs[s][1], want[1])
    # the blocks are affine in s, so an order-1 forecast from the last two recomputes is exact (order 2 too)
    torch.testing.assert_close(outs[6][0], exact[6][0])


def test_two_calls_per_step_do_not_divide_by_zero():
    """Heun calls the UNet twice per step after the first; both calls of a recompute step share its factors."""
    from diffusers import HeunDiscreteScheduler

    pipe = tiny_sd_pipeline(seed=2)
    pipe.scheduler = HeunDiscreteScheduler.from_config(pipe.scheduler.config)
    sched = cs.compile_schedule(pipe, cs.BlockMask({"mid_block": "RRR.R."}), num_inference_steps=6,
                                reuse="taylor", taylor_order=2)
    with sched.applied(pipe):
        out = pipe("a red circle", num_inference_steps=6, height=32, width=32, output_type="latent",
                   generator=torch.Generator().manual_seed(0)).images
    assert torch.isfinite(out).all()


# -- IR, file format, compile ----------------------------------------------------------------------------
def test_taylor_schedules_are_format_3_and_round_trip_byte_stable():
    net, sched = _toy(2)
    assert sched.format == "cachesearch/schedule@3" and sched.taylor_order == 2
    text = dump_schedule(sched)
    assert "\nreuse: taylor\ntaylor_order: 2\n" in text and text.startswith("format: cachesearch/schedule@3\n")
    back = parse_schedule(yaml.safe_load(text))
    assert back == sched and dump_schedule(back) == text
    plain = sched.with_updates(reuse="output", taylor_order=None)
    assert plain.format == "cachesearch/schedule@1" and "taylor_order" not in dump_schedule(plain)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"taylor_order": 3}, r"^taylor_order: expected 1 or 2 \(the order of the Taylor forecast\), got 3$"),
        ({"taylor_order": "two"}, r"^taylor_order: expected an integer, got 'two'$"),
        ({"taylor_order": None}, r"^taylor_order: expected an integer, got None$"),
        ({"reuse": "output"}, r"^taylor_order: only allowed with reuse: taylor, not reuse: output$"),
        ({"format": "cachesearch/schedule@2"}, r"^<top level>: unknown key\(s\) \['taylor_order'\]"),
    ],
)
def test_bad_taylor_fields_in_a_file_name_the_field(edit, message):
    _, sched = _toy(1)
    doc = yaml.safe_load(dump_schedule(sched))
    doc.update(edit)
    with pytest.raises(cs.ScheduleError, match=message):
        parse_schedule(doc)


def test_older_formats_refuse_taylor_and_the_new_policy_kinds():
    _, sched = _toy(1)
    doc = yaml.safe_load(dump_schedule(sched))
    del doc["taylor_order"]
    with pytest.raises(cs.ScheduleError, match=r"^taylor_order: missing; reuse: taylor needs"):
        parse_schedule(doc)
    doc["format"] = "cachesearch/schedule@1"
    with pytest.raises(cs.ScheduleError, match=r"reuse: expected one of \['output', 'residual'\], got 'taylor'; "
                                               r"reuse: taylor needs format: cachesearch/schedule@3"):
        parse_schedule(doc)
    doc.update(reuse="residual", policy={"kind": "middle", "interval": 2, "front": 1, "back": 0, "warmup": 0})
    with pytest.raises(cs.ScheduleError, match=r"^policy.kind: 'middle' schedules need format: cachesearch/schedule@3"):
        parse_schedule(doc)
    doc["format"] = "cachesearch/schedule@3"
    assert parse_schedule(doc).format == "cachesearch/schedule@3"


def test_taylor_order_3_and_per_branch_masks_are_refused():
    with pytest.raises(cs.ScheduleError, match=r"^policy.order: expected an integer <= 2, got 3$"):
        cs.TaylorSeer(interval=2, order=3)
    _, sched = _toy(1)
    with pytest.raises(cs.ScheduleError, match=r"^taylor_order: expected 1 or 2"):
        sched.with_updates(taylor_order=3)
    with pytest.raises(cs.ScheduleError, match=r"^taylor_order: only meaningful with reuse: taylor"):
        sched.with_updates(reuse="output")
    split = BlockEntry(block="blk", cond="RRR.R..", uncond="RRRRR..")
    with pytest.raises(cs.ScheduleError, match=r'^blocks\["blk"\]: reuse: taylor .* per-branch'):
        sched.with_updates(blocks=(split,))


def test_compile_takes_the_reuse_mode_from_the_policy():
    pipe = tiny_sd_pipeline(seed=3)
    comps = ["down_blocks.1.attentions.0.transformer_blocks.0.attn1"]
    ts = cs.compile_schedule(pipe, cs.TaylorSeer(interval=2, warmup=2, order=2, blocks=comps), num_inference_steps=8)
    assert ts.reuse is cs.ReuseMode.TAYLOR and ts.taylor_order == 2 and ts.name == "taylorseer-n2-w2-o2"
    assert ts.masks()[comps[0]] == "RR.R.R.R"  # s < 2 or (s - 3) % 2 == 0: the step after the warm-up forecasts
    assert ts.policy == {"kind": "taylorseer", "interval": 2, "warmup": 2, "order": 2, "blocks": comps}
    unet_default = cs.compile_schedule(pipe, cs.TaylorSeer(interval=2), num_inference_steps=8)  # UNet attn1/attn2
    assert {b.block.rsplit(".", 1)[1] for b in unet_default.blocks} == {"attn1", "attn2"}
    with pytest.raises(cs.ScheduleError, match=r"^reuse: a taylorseer policy forecasts .* got 'output'$"):
        cs.compile_schedule(pipe, cs.TaylorSeer(interval=2, blocks=comps), num_inference_steps=8, reuse="output")
    with pytest.raises(cs.ScheduleError, match=r"^taylor_order: the policy's order is 1, got 2$"):
        cs.compile_schedule(pipe, cs.TaylorSeer(interval=2, blocks=comps), num_inference_steps=8, taylor_order=2)
    mask = cs.compile_schedule(pipe, cs.BlockMask({"mid_block": "RR.."}), num_inference_steps=4, reuse="taylor")
    assert mask.taylor_order == 1
    with pytest.raises(cs.ScheduleError, match=r"^taylor_order: only meaningful with reuse='taylor'"):
        cs.compile_schedule(pipe, cs.BlockMask({"mid_block": "RR.."}), num_inference_steps=4, taylor_order=2)
    # MiddleCache is made for residual reuse (DiT blocks, tests/runtime/test_dit_oracles.py); a UNet's stages
    # change shape, so there it is compiled with reuse="output"
    with pytest.raises(cs.ScheduleError, match=r'^blocks\["down_blocks.1"\]: reuse: residual needs'):
        cs.compile_schedule(pipe, cs.MiddleCache(interval=2, front=1, back=1), num_inference_steps=4)
    mid = cs.compile_schedule(pipe, cs.MiddleCache(interval=2, front=1, back=1), num_inference_steps=4,
                              reuse="output")
    assert mid.reuse is cs.ReuseMode.OUTPUT and mid.name == "middle-n2-f1-b1"
    assert [b.block for b in mid.blocks] == ["down_blocks.1", "mid_block", "up_blocks.0"]
    with pytest.raises(cs.ScheduleError, match=r"^policy.front \+ policy.back: 3 \+ 2 blocks always run.* of 5$"):
        cs.compile_schedule(pipe, cs.MiddleCache(interval=2, front=3, back=2), num_inference_steps=4)
    for sched, n in ((ts, 12), (mid, 9)):  # re-compiled for another step count without the model
        moved = sched.for_steps(n)
        assert moved.num_steps == n and moved.reuse is sched.reuse and moved.taylor_order == sched.taylor_order
    assert ts.for_steps(12).masks()[comps[0]] == "RR.R.R.R.R.R"
    assert mid.for_steps(5).masks()["mid_block"] == "R.R.R"


def test_taylor_under_regional_compile_equals_eager():
    """compile=True wraps each hooked block's forward; the forecast arithmetic stays outside compiled code."""
    from tests._tiny_dit import flow_loop, tiny_transformer

    model = tiny_transformer("flux", seed=1)
    sched = cs.compile_schedule(model, cs.TaylorSeer(interval=2, warmup=2, order=2), num_inference_steps=6)
    with sched.applied(model):
        eager = flow_loop(model, "flux", 6)
    torch._dynamo.reset()
    with sched.applied(model, compile={"backend": "eager"}):
        compiled = flow_loop(model, "flux", 6)
    torch.testing.assert_close(compiled, eager, rtol=0, atol=1e-6)
    assert all("forward" not in m.__dict__ for m in model.modules())


# -- the divergence guard (issue 30) -------------------------------------------------------------------------
def _state(f0: torch.Tensor, f1: torch.Tensor, f2: torch.Tensor, last: int = 4):
    return (last, [[f0, f1, f2]], f0)


def test_the_guard_stops_the_series_at_the_first_term_that_grows_per_row():
    f0 = torch.ones(4, 3)
    f1 = torch.tensor([[0.1] * 3, [0.1] * 3, [5.0] * 3, [0.1] * 3])  # row 2: the first-order term outgrows F0
    f2 = torch.tensor([[0.02] * 3, [3.0] * 3, [0.0] * 3, [float("inf")] * 3])  # row 1: the second outgrows the first
    state = _state(f0, f1, f2)
    full = taylor_forecast(state, 6)  # offset 2: F0 + 2 F1 + 2 F2
    got = taylor_forecast(state, 6, guard=True)
    torch.testing.assert_close(got[0], full[0])  # a shrinking series is kept whole
    torch.testing.assert_close(got[1], f0[1] + 2 * f1[1])  # stops at order 1
    torch.testing.assert_close(got[2], f0[2])  # stops at order 0, so the (shrinking) second term is dropped too
    torch.testing.assert_close(got[3], f0[3] + 2 * f1[3])  # an infinite term is never added
    assert torch.isfinite(got).all() and not torch.isfinite(full[3]).all()
    assert got.dtype == f0.dtype and got.shape == f0.shape


def test_the_guard_keeps_low_precision_dtypes_and_one_dimensional_outputs():
    f0, f1, f2 = torch.ones(3, dtype=torch.bfloat16), torch.full((3,), 0.5, dtype=torch.bfloat16), torch.ones(3)
    got = taylor_forecast(_state(f0, f1, f2.to(torch.bfloat16)), 5, guard=True)  # offset 1: terms 1, 0.5, 0.5
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), torch.full((3,), 2.0))  # 1 + 0.5 + 0.5: each term <= the one before


def test_the_guarded_forecast_reads_nothing_back_to_the_host():
    from torch.utils._python_dispatch import TorchDispatchMode

    class Syncs(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if "_local_scalar_dense" in str(func):  # what .item(), bool(), .tolist() dispatch to
                self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    g = torch.Generator().manual_seed(0)
    state = _state(*(torch.randn(2, 5, 3, generator=g) for _ in range(3)))
    with Syncs() as mode:
        out = taylor_forecast(state, 7, guard=True)
    assert out.shape == (2, 5, 3) and mode.ops == []
    with Syncs() as mode:  # the mode sees a host read when there is one
        bool((out > 0).any())
    assert mode.ops


@pytest.mark.parametrize("guard", [False, True])
def test_the_applier_forecasts_with_the_schedules_guard(guard, monkeypatch):
    net, sched = _toy(2)
    sched = sched.with_updates(taylor_guard=guard)
    xs = [torch.full((1, 3), float((-3) ** s)) for s in range(7)]  # alternating: second differences blow up
    exact, outs = _run_refusing_host_reads(net, sched, xs, monkeypatch)
    state, differs = None, False
    for s, ch in enumerate(sched.blocks[0].cond):
        if ch == "R":
            state = taylor_update(state, exact[s], s, 2)
        else:
            want = taylor_forecast(state, s, guard)
            assert torch.equal(outs[s][0], want[0]) and torch.equal(outs[s][1], want[1])
            differs |= not torch.equal(want[0], taylor_forecast(state, s)[0])
    assert differs is guard  # the guard changed some forecast of this diverging input, and only with the guard


def test_guarded_schedules_are_format_4_and_round_trip():
    _, sched = _toy(2)
    guarded = sched.with_updates(taylor_guard=True)
    assert guarded.format == "cachesearch/schedule@4" and sched.format == "cachesearch/schedule@3"
    text = dump_schedule(guarded)
    assert "\ntaylor_order: 2\ntaylor_guard: true\n" in text and "taylor_guard" not in dump_schedule(sched)
    back = parse_schedule(yaml.safe_load(text))
    assert back == guarded and back.taylor_guard is True and dump_schedule(back) == text
    from cachesearch.search.objective import mask_key

    assert mask_key(guarded) != mask_key(sched)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"taylor_guard": "yes"}, r"^taylor_guard: expected true or false, got 'yes'$"),
        ({"reuse": "output", "taylor_order": None}, r"^taylor_guard: only allowed with reuse: taylor, not reuse"),
        ({"format": "cachesearch/schedule@3"}, r"^<top level>: unknown key\(s\) \['taylor_guard'\]"),
    ],
)
def test_bad_guard_fields_in_a_file_name_the_field(edit, message):
    _, sched = _toy(1)
    doc = yaml.safe_load(dump_schedule(sched.with_updates(taylor_guard=True)))
    doc.update(edit)
    doc = {k: v for k, v in doc.items() if v is not None}
    with pytest.raises(cs.ScheduleError, match=message):
        parse_schedule(doc)


def test_the_guard_needs_a_forecast():
    _, sched = _toy(1)
    with pytest.raises(cs.ScheduleError, match=r"^taylor_guard: only meaningful with reuse: taylor"):
        sched.with_updates(reuse="output", taylor_order=None, taylor_guard=True)
    with pytest.raises(cs.ScheduleError, match=r"^policy.guard: guards a Taylor forecast; it needs order 1 or 2"):
        cs.MiddleCacheAuto(threshold=0.1, guard=True)
    pipe = tiny_sd_pipeline(seed=3)
    guarded = cs.compile_schedule(pipe, cs.BlockMask({"mid_block": "RR.."}), num_inference_steps=4, reuse="taylor",
                                  taylor_guard=True)
    assert guarded.taylor_guard and guarded.format == "cachesearch/schedule@4"
