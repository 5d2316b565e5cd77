"""Format @4: runtime schedules (a library's own cache as plain YAML) and the held-out cost ratio. Older formats load
unchanged (their golden files are in the same folder); a @4 file is refused field by field where it is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import cachesearch as cs
from cachesearch.schedule import LibraryConfig, RuntimeCache, load_schedule, parse_schedule, policy_from_dict

GOLDEN = Path(__file__).parent / "golden"


def _doc(name: str = "v4_fbcache.yaml") -> dict:
    return yaml.safe_load((GOLDEN / name).read_text())


def test_v4_golden_files_hold_the_library_its_version_and_plain_configs():
    s = load_schedule(GOLDEN / "v4_fbcache.yaml")
    assert s.kind == "runtime" and s.format == "cachesearch/schedule@4" and s.blocks == ()
    assert s.runtime == RuntimeCache(library="diffusers", version="0.42.1", configs={
        "config": LibraryConfig(method="FirstBlockCacheConfig", fields={"threshold": 0.12})})
    assert s.runtime.method == "FirstBlockCacheConfig"
    assert s.metrics.latency.cost_ratio == 0.48 and s.metrics.latency.cost_ratio_heldout == 0.51
    assert s.pipeline_kwargs() == {"num_inference_steps": 20, "guidance_scale": 3.5}
    assert s.masks() == {} and not s.per_branch
    assert policy_from_dict(s.policy) == cs.DiffusersCache({"method": "FirstBlockCacheConfig", "threshold": 0.12})
    d = load_schedule(GOLDEN / "v4_dbcache.yaml")
    assert d.runtime.library == "cache-dit" and list(d.runtime.configs) == ["cache_config", "calibrator_config"]
    assert d.runtime.configs["cache_config"].fields["max_continuous_cached_steps"] == 3
    assert d.runtime.configs["calibrator_config"].fields["calibrator_kwargs"] == {}


def test_a_runtime_schedule_has_no_mask_to_count_or_retime():
    s = load_schedule(GOLDEN / "v4_fbcache.yaml")
    with pytest.raises(cs.ScheduleError, match="runtime schedule: what recomputes is decided at run time"):
        s.recompute_fraction()
    with pytest.raises(cs.ScheduleError, match=r"compile its policy again for 10 steps"):
        s.for_steps(10)


def test_a_static_schedule_with_a_heldout_cost_is_written_in_v4_and_older_ones_stay():
    s = load_schedule(GOLDEN / "v1_deepcache.yaml")
    assert s.format == "cachesearch/schedule@1"
    lat = s.metrics.latency
    v4 = s.with_updates(metrics=cs.schedule.Metrics(quality=s.metrics.quality, latency=cs.schedule.LatencyMetrics(
        device=lat.device, ms=lat.ms, baseline_ms=lat.baseline_ms, speedup=lat.speedup, cost_ratio=lat.cost_ratio,
        cost_ratio_heldout=0.5)))
    assert v4.format == "cachesearch/schedule@4"
    assert parse_schedule(yaml.safe_load(v4.to_yaml())) == v4
    doc = yaml.safe_load(v4.to_yaml())
    doc["format"] = "cachesearch/schedule@3"
    with pytest.raises(cs.ScheduleError, match=r"metrics\.latency: unknown key\(s\) \['cost_ratio_heldout'\]"):
        parse_schedule(doc)


BAD = [
    (lambda d: d.update(format="cachesearch/schedule@3"), "runtime: runtime schedules need format: "
                                                          "cachesearch/schedule@4"),
    (lambda d: d.update(blocks={"transformer_blocks.0": "RR"}), r"unknown key\(s\) \['blocks'\]"),
    (lambda d: d.update(reuse="output"), r"unknown key\(s\) \['reuse'\]"),
    (lambda d: d["runtime"].update(library="teacache"), r"runtime\.library: expected one of \['cache-dit', "
                                                        r"'diffusers'\], got 'teacache'"),
    (lambda d: d["runtime"].pop("config"), r"runtime: missing required key\(s\) \['config'\]"),
    (lambda d: d["runtime"].update(cache_config={"method": "DBCacheConfig"}), r"runtime: unknown key\(s\) "
                                                                              r"\['cache_config'\]"),
    (lambda d: d["runtime"]["config"].pop("method"), r"runtime\.config: expected a mapping with a 'method'"),
    (lambda d: d["runtime"]["config"].update(method="First Block"), r"runtime\.config\.method: expected the name "
                                                                    r"of a config class"),
    (lambda d: d["runtime"]["config"].update(threshold=-0.1), r"runtime\.config\.threshold: expected a number "
                                                              r">= 0\.0, got -0\.1"),
    (lambda d: d["runtime"]["config"].update(threshold="0.1"), r"runtime\.config\.threshold: expected a number, "
                                                               r"got '0\.1'"),
    (lambda d: d["runtime"].update(version=1.5), r"runtime\.version: expected a non-empty string"),
    (lambda d: d.update(policy={"kind": "deepcache", "interval": 2}), r"policy\.kind: a runtime schedule's policy "
                                                                       r"is a runtime policy"),
    (lambda d: d["policy"]["config"].update(threshold=-1), r"policy\.config\.threshold: expected a number >= 0"),
]


@pytest.mark.parametrize(("mutate", "message"), BAD, ids=[m for _, m in BAD])
def test_a_wrong_v4_file_names_the_field(mutate, message):
    doc = _doc()
    mutate(doc)
    with pytest.raises(cs.ScheduleError, match=message):
        parse_schedule(doc)


def test_a_runtime_policy_needs_a_runtime_section():
    doc = yaml.safe_load((GOLDEN / "v3_taylorseer.yaml").read_text())
    doc["format"] = "cachesearch/schedule@4"
    doc["policy"] = {"kind": "diffusers", "config": {"method": "FirstBlockCacheConfig"}}
    with pytest.raises(cs.ScheduleError, match="has a 'runtime' section"):
        parse_schedule(doc)


def test_python_tags_in_a_runtime_config_are_refused(tmp_path):
    text = (GOLDEN / "v4_fbcache.yaml").read_text().replace(
        "threshold: 0.12}\npolicy", "threshold: !!python/object/apply:os.getcwd []}\npolicy")
    path = tmp_path / "tagged.yaml"
    path.write_text(text)
    with pytest.raises(cs.ScheduleError, match="python/object"):
        load_schedule(path)


def test_library_objects_become_plain_values_or_are_refused():
    from cachesearch.schedule._runtime import PIPELINE_TIMESTEP, library_config, plain_value

    class Dtype:  # what duck typing sees of a torch.dtype
        __module__ = "torch"

        def __str__(self) -> str:
            return "torch.bfloat16"

    Dtype.__name__ = "dtype"
    assert plain_value("x", Dtype()) == "bfloat16"
    assert plain_value("x", (1, (2.5, None))) == [1, [2.5, None]]
    assert plain_value("x", lambda: 1, field="current_timestep_callback") == PIPELINE_TIMESTEP
    with pytest.raises(cs.ScheduleError, match=r"^x: a callable .* cannot be written to a schedule file"):
        plain_value("x", print, field="attention_weight_callback")
    with pytest.raises(cs.ScheduleError, match=r"^x\.a: expected a finite number, got nan"):
        plain_value("x", {"a": float("nan")})
    with pytest.raises(cs.ScheduleError, match=r"expected a library cache config"):
        library_config("policy.config", 3)
