"""Run settings typed once: defaults, flags and help in RunSettings; run.yaml keys; the evaluation config."""

from __future__ import annotations

from dataclasses import MISSING, fields

import pytest

from cachesearch.search import RunSettings, SearchError, resolve_settings
from cachesearch.search.settings import default, flag, option_help


def test_every_option_has_a_flag_and_a_help_that_ends_with_its_default() -> None:
    for f in fields(RunSettings):
        assert flag(f.name).startswith("--"), f.name
        if f.default is MISSING:
            continue
        shown = f.metadata["default_text"] or (f"{f.default:g}" if isinstance(f.default, float) else f.default)
        assert option_help(f.name).endswith(f" Default: {shown}."), f.name
    assert option_help("num_steps") == "Reference sampler steps. Default: 20."
    assert option_help("timeout") == "Stop starting trials after this many seconds; 0 = no limit. Default: 330."
    assert (flag("num_steps"), flag("max_quality"), flag("prompts_file")) == ("--steps", "--max-lpips", "--prompts")
    assert default("num_steps") == RunSettings(name="x").num_steps == 20


def test_run_yaml_and_study_identity_keep_the_key_steps() -> None:
    s = RunSettings(name="x", num_steps=6, max_quality=0.1)
    d = s.to_dict()
    assert d["steps"] == 6 and "num_steps" not in d
    assert list(d) == ["name", "model", "space", "steps", *list(d)[4:]]
    assert RunSettings.from_dict(d) == s
    assert RunSettings.from_dict({**d, "from_a_newer_version": 1}) == s
    assert s.identity()["steps"] == 6 and "num_steps" not in s.identity()


def test_eval_config_is_mapped_from_the_settings() -> None:
    s = RunSettings(name="x", model="arch:sd15", num_steps=7, scheduler="ddim", guidance_scale=5.0, n_train=3,
                    n_heldout=2, metric="psnr", latency="measured", device="cpu", prompts_file="p.txt")
    c = s.eval_config(cache_dir="/tmp/c")
    got = (c.model, c.num_inference_steps, c.scheduler, c.guidance_scale, c.n_train, c.n_heldout, c.metric,
           c.latency, c.device, c.prompts_file, c.cache_dir)
    assert got == ("arch:sd15", 7, "ddim", 5.0, 3, 2, "psnr", "measured", "cpu", "p.txt", "/tmp/c")
    assert s.eval_config().cache_dir == type(c)(model="x").cache_dir  # EvalConfig's own default


def test_validation_names_the_flag(tmp_path) -> None:
    with pytest.raises(SearchError, match=r"^--steps: expected an integer >= 1, got 0$"):
        RunSettings(name="x", num_steps=0)
    with pytest.raises(SearchError, match=r"^--n-train: expected an integer >= 1"):
        RunSettings(name="x", n_train=0)
    s = resolve_settings(None, {"model": "arch:sd15", "num_steps": 12, "scheduler": "ddim"}, out=str(tmp_path))
    assert s.name == "arch-sd15-ddim12" and s.num_steps == 12 and s.out == str(tmp_path)


def test_the_evaluators_held_out_split_is_the_pool_validation_grows_into() -> None:
    assert RunSettings(name="x", model="embedded").eval_config().n_heldout == 64  # 16 first, up to 64
    assert RunSettings(name="x", model="embedded", heldout_max=8).eval_config().n_heldout == 16  # never fewer
    assert RunSettings(name="x", model="arch:sd15", n_heldout=4).eval_config().n_heldout == 24  # generic prompts
    with pytest.raises(SearchError, match=r"^--n-heldout-max: expected an integer >= 1"):
        RunSettings(name="x", heldout_max=0)
