"""Searches on transformer families that have no file of their own (issue 26, point 6): a few trials of the
default space (chosen by the adapter: ``dit`` for every transformer with components) and of ECAD's binary
component space run without a failed trial on a representative set of denoisers — video (SkyReels-V2 on Wan's
blocks, HunyuanVideo's double and single blocks, CogVideoX, Kandinsky 5's channels-last latents, LTX-2's video and
audio streams) and image (Qwen-Image's dual-stream blocks, Z-Image's per-sample latent lists) — each a bare tiny
transformer in a minimal
flow-matching pipeline (:mod:`tests.search._bare`), scored by the FakeEvaluator (real block space, MACs, references,
profile and compiled schedules; synthetic quality). Wan itself, a video family with a file of its own, runs end to
end on its tiny pipeline in tests/commands/test_run_video.py.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState

from cachesearch.evaluate import EvalConfig
from cachesearch.models._loaders import LoadedModel
from cachesearch.search import default_space, run_search
from tests.search._bare import bare_pipeline
from tests.search.conftest import FakeEvaluator

FAMILIES = {  # class: configuration entries that give it 4 blocks (the dit space's middle family needs > 2)
    "SkyReelsV2Transformer3DModel": {"num_layers": 4},
    "QwenImageTransformer2DModel": {"num_layers": 4},
    "HunyuanVideoTransformer3DModel": {"num_layers": 2, "num_single_layers": 2},
    "CogVideoXTransformer3DModel": {"num_layers": 4},
    "ZImageTransformer2DModel": {"n_layers": 4},
    "Kandinsky5Transformer3DModel": {"num_visual_blocks": 4},
    "LTX2VideoTransformer3DModel": {"num_layers": 4},
}


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("space", [None, "ecad"])
def test_a_short_search_runs_on_a_generic_transformer_family(name, space, settings, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    pipe = bare_pipeline(name, **FAMILIES[name])
    model = LoadedModel(pipe=pipe, denoiser=pipe.transformer, source=f"tiny:{name}", random_weights=True,
                        family="transformer")
    ev = FakeEvaluator(EvalConfig(model="tiny", num_inference_steps=6, n_train=2, n_heldout=2, height=8, width=8,
                                  guidance_scale=1.0, batch_size=1, cache_dir=str(tmp_path / "cache")), model)
    assert default_space(ev.space).name == "dit"
    overrides = {"space": space} if space else {}
    s = settings(trials=12, sampler="random", num_steps=6, **overrides)
    run_search(s, evaluator=ev, export=False, space_given=space is not None)
    run = yaml.safe_load((s.run_dir / "run.yaml").read_text())
    assert run["study"]["space"] == (space or "dit")
    study = optuna.load_study(study_name=None, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(s.run_dir / "study.journal"))))
    trials = study.get_trials()
    assert len(trials) >= 12 and not [t for t in trials if t.state == TrialState.FAIL]
    kinds = {t.params.get("mask.family") for t in trials}
    assert (kinds == {None} and all(any(k.startswith("components.") for k in t.params) for t in trials
                                    if t.state == TrialState.COMPLETE and t.params)) if space else len(kinds) > 1
