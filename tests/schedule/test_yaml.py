"""The schedule formats (@1 to @4): golden files of each, exact round trips, strict validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import cachesearch as cs
from cachesearch.schedule import dump_schedule, load_schedule, parse_schedule

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("v*.yaml")), ids=lambda p: p.name)
def test_golden_files_load_and_dump_byte_identical(path):
    sched = load_schedule(path)
    assert dump_schedule(sched) == path.read_text()
    assert sched.format == f"cachesearch/schedule@{path.name[1]}"  # written in the version it needs


def test_v2_records_the_reference_and_v1_files_have_none():
    s = load_schedule(GOLDEN / "v2_reference.yaml")
    assert s.reference == cs.schedule.ReferenceRun(scheduler="DDIMScheduler", num_inference_steps=20,
                                                   guidance_scale=5.0)
    assert s.num_steps == 10 and s.format == "cachesearch/schedule@2"
    assert load_schedule(GOLDEN / "v1_deepcache.yaml").reference is None


def test_reference_is_refused_in_a_v1_file_and_checked_in_v2():
    doc = _base()
    doc["reference"] = {"scheduler": "DDIMScheduler", "num_inference_steps": 20}
    with pytest.raises(cs.ScheduleError, match=r"unknown key\(s\) \['reference'\]"):
        parse_schedule(doc)
    doc["format"] = "cachesearch/schedule@2"
    assert parse_schedule(doc).reference.num_inference_steps == 20
    doc["reference"]["num_inference_steps"] = 0
    with pytest.raises(cs.ScheduleError, match=r"reference\.num_inference_steps: expected an integer >= 1"):
        parse_schedule(doc)
    doc["reference"] = {"scheduler": "DDIMScheduler"}
    with pytest.raises(cs.ScheduleError, match=r"reference: missing required key\(s\) \['num_inference_steps'\]"):
        parse_schedule(doc)


def test_golden_content_is_read_as_written():
    s = load_schedule(GOLDEN / "v1_perbranch_steps.yaml")
    assert s.reuse is cs.ReuseMode.RESIDUAL
    assert s.sampler.timesteps == (999, 832, 666, 499, 333, 166)
    assert s.per_branch and s.masks("uncond")["up_blocks.1"] == "R....."
    assert s.pipeline_kwargs() == {"timesteps": [999, 832, 666, 499, 333, 166]}
    d = load_schedule(GOLDEN / "v1_deepcache.yaml")
    assert d.metrics.quality.heldout == 0.045 and d.metrics.latency.speedup == 2.31
    assert d.provenance.trial == 17
    assert d.pipeline_kwargs() == {"num_inference_steps": 10, "guidance_scale": 7.5}


def test_v3_golden_file_forecasts_with_taylor():
    s = load_schedule(GOLDEN / "v3_taylorseer.yaml")
    assert s.reuse is cs.ReuseMode.TAYLOR and s.taylor_order == 2 and s.model.family == "flux"
    assert s.policy == {"kind": "taylorseer", "interval": 3, "warmup": 3, "order": 2, "blocks": None}
    assert s.masks()["single_transformer_blocks.1.attn"] == "RRR.R..R.."
    assert s.for_steps(13).masks()["transformer_blocks.0.attn"] == "RRR.R..R..R.."


def test_save_is_atomic_and_round_trips(tmp_path):
    s = load_schedule(GOLDEN / "v1_deepcache.yaml")
    out = s.save(tmp_path / "sub" / "s.yaml")
    assert load_schedule(out) == s
    assert [p.name for p in out.parent.iterdir()] == ["s.yaml"]  # no temp files left behind


def _base() -> dict:
    return yaml.safe_load((GOLDEN / "v1_deepcache.yaml").read_text())


def _set(doc: dict, path: str, value) -> dict:
    keys = path.split("/")
    node = doc
    for k in keys[:-1]:
        node = node[k]
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return doc


_DELETE = object()

# (mutation path, value, expected fragment of the message: the field path and what is expected)
MALFORMED = [
    ("format", "cachesearch/schedule@9", "format: expected one of ['cachesearch/schedule@1', "
     "'cachesearch/schedule@2', 'cachesearch/schedule@3', 'cachesearch/schedule@4'], got 'cachesearch/schedule@9'; "
     "this file needs a newer "
     "cachesearch"),
    ("format", _DELETE, "format: expected"),
    ("name", _DELETE, "missing required key(s) ['name']"),
    ("extra_key", 1, "unknown key(s) ['extra_key']"),
    ("model/fingerprint", "md5:abc", "model.fingerprint: expected 'sha256:' + 64 hex digits"),
    ("model/colour", "red", "model: unknown key(s) ['colour']"),
    ("sampler/num_inference_steps", "ten", "sampler.num_inference_steps: expected an integer"),
    ("sampler/num_inference_steps", 0, "sampler.num_inference_steps: expected an integer >= 1"),
    ("sampler/guidance_scale", "high", "sampler.guidance_scale: expected a number or null"),
    ("sampler/timesteps", [999, 500], "sampler.timesteps: has 2 entries but num_inference_steps is 10"),
    ("reuse", "copy", "reuse: expected one of ['output', 'residual']"),
    ("blocks/mid_block", "R..R..R..", 'blocks["mid_block"]: mask has 9 characters but the sampler runs 10 steps'),
    ("blocks/mid_block", ".RRRRRRRRR", 'blocks["mid_block"]: step 0 must be \'R\''),
    ("blocks/mid_block", "R..x..R..R", "blocks[\"mid_block\"]: only 'R' (recompute) and '.' (reuse) are allowed"),
    ("blocks/mid_block", 7, 'blocks["mid_block"]: expected a mask string'),
    ("blocks/mid_block", {"cond": "R" * 10}, "blocks[\"mid_block\"]: missing required key(s) ['uncond']"),
    ("blocks/up_blocks.2", "R" * 10, 'blocks["up_blocks.2.resnets.0"] is inside blocks["up_blocks.2"]'),
    ("blocks/up blocks!", "R" * 10, "is not a module path"),
    ("blocks", {}, "blocks: expected a mapping of block name"),
    ("policy/kind", "magic", "policy.kind: expected one of"),
    ("policy/interval", 0, "policy.interval: expected an integer >= 1"),
    ("policy/bogus", 3, "policy: unknown keys ['bogus']"),
    ("metrics/quality/train", "low", "metrics.quality.train: expected a number"),
    ("metrics/latency/fps", 3, "metrics.latency: unknown key(s) ['fps']"),
    ("provenance/created", _DELETE, "provenance: missing required key(s) ['created']"),
    ("provenance/trial", -1, "provenance.trial: expected an integer >= 0"),
]


@pytest.mark.parametrize(("path", "value", "message"), MALFORMED, ids=[f"{m[0]}={m[1]!r}"[:40] for m in MALFORMED])
def test_malformed_files_give_one_clear_error(tmp_path, path, value, message):
    doc = _set(_base(), path, value)
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(cs.ScheduleError) as err:
        load_schedule(f)
    assert message in str(err.value)
    assert str(f) in str(err.value)
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("format: cachesearch/schedule@1\nname: a\nname: b\n", "key 'name' appears twice"),
        ("format: [unclosed\n", "not valid YAML"),
        ("- just\n- a list\n", "the document must be a mapping"),
        ("!!python/object/apply:os.system ['echo pwned']\n", "not valid YAML"),
    ],
)
def test_unparseable_or_unsafe_documents_are_refused(tmp_path, text, message):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(cs.ScheduleError, match=message):
        load_schedule(f)


def test_missing_file_is_a_schedule_error(tmp_path):
    with pytest.raises(cs.ScheduleError, match="no such schedule file"):
        load_schedule(tmp_path / "nope.yaml")


def test_unquoted_timestamp_is_accepted_as_text():
    doc = _base()
    import datetime as dt

    doc["provenance"]["created"] = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.timezone.utc)
    assert parse_schedule(doc).provenance.created == "2026-11-23T12:00:00Z"


def test_masks_beginning_with_dots_are_quoted_so_yaml_never_misreads_them():
    doc = _base()
    doc["blocks"]["mid_block"] = {"cond": "R" + "." * 9, "uncond": "R" + "." * 9}
    text = dump_schedule(parse_schedule(doc))
    assert '"R........."' in text
    assert parse_schedule(yaml.safe_load(text)) == parse_schedule(doc)
