"""`benchmarks/peers_dit.py`'s core on the tiny FLUX pipeline (4 steps, 2 + 2 images): peers through the
evaluator's pipeline call, costs counted from what ran, a fake run directory as our front and as the "ECAD"
front, the matching and its verdicts, the tables, the plot and the JSON; and the CLI's help and refusals."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

import cachesearch as cs
from cachesearch.evaluate import EvalConfig, Evaluator
from cachesearch.models._loaders import LoadedModel
from cachesearch.runtime import fingerprint_module
from cachesearch.schedule import save_schedule
from tests._tiny_dit import tiny_dit_pipeline

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import peers_dit  # noqa: E402

STEPS = 4
HAS_CACHE_DIT = importlib.util.find_spec("cache_dit") is not None


@pytest.fixture(scope="module")
def ev(tmp_path_factory):
    pipe = tiny_dit_pipeline("flux", seed=1)
    model = LoadedModel(pipe=pipe, denoiser=pipe.transformer, source="test", random_weights=True, family="flux")
    config = EvalConfig(num_inference_steps=STEPS, n_train=2, n_heldout=2, batch_size=2, height=16, width=16,
                        cache_dir=str(tmp_path_factory.mktemp("refs")))
    return Evaluator(config, model=model)


def _run_dir(ev, path: Path, trials: int) -> Path:
    (path / "schedules").mkdir(parents=True)
    attn = ev.space.attention_components()
    for name, policy in [("full", cs.Full()), ("steps2", cs.StepSet(count=2)),
                         ("attn", cs.BlockMask(dict.fromkeys(attn, "R.R."))),
                         ("middle", cs.MiddleCache(interval=2, front=1, back=1))]:
        save_schedule(ev.compile(policy, name=name), path / "schedules" / f"{name}.yaml")
    (path / "schedules" / "index.yaml").write_text("format: cachesearch/index@1\n")  # skipped, not a schedule
    (path / "study.journal").write_text('{"op_code":4,"study_id":0}\n' * trials + '{"op_code":5}\n')
    return path


def test_core_on_the_tiny_flux_pipeline(ev, tmp_path):
    fp = fingerprint_module(ev.denoiser)
    front, ecad = _run_dir(ev, tmp_path / "default-run", 5), _run_dir(ev, tmp_path / "ecad-run", 5)
    methods = ["fbcache", "taylorseer", "magcache"] + (["dbcache"] if HAS_CACHE_DIT else [])
    doc = peers_dit.run(ev, methods=methods, quick=True, front=front, ecad_front=ecad, repeats=1)

    full = doc["full_compute"]
    assert full["cost_ratio"] == 1.0 and full["calls"] == STEPS and full["ms_per_image"] > 0
    assert full["equals_reference"] and full["equals_reference_after_peers"]
    assert fingerprint_module(ev.denoiser) == fp  # no peer left anything behind (cache-dit reorders modules)
    assert not ev.pipe.transformer.is_cache_enabled

    rows = {(r["method"], r["setting"]): r for r in doc["peers"]}
    per_setting = {"dbcache": 2}  # the dbcache family's baselines: F1B0 and F2B1 at each threshold
    assert {m for m, _ in rows} == set(methods)
    assert len(rows) == sum(len(peers_dit.QUICK_GRID[m]) * per_setting.get(m, 1) for m in methods)
    for r in rows.values():
        assert r["valid"], r
        assert 0 < r["cost_ratio"] <= 1 and r["lpips"] >= 0 and r["ms_per_image"] > 0
        t = r["tail"]  # the per-image distribution on the scored pairs
        assert t["n"] == len(t["losses"]) == 2 and t["mean"] == pytest.approx(r["lpips"], abs=1e-6)
        assert t["median"] <= t["p90"] <= t["max"] == pytest.approx(max(t["losses"]), abs=1e-6)
        assert r["runtime"]["library"] == ("cache-dit" if r["method"] == "dbcache" else "diffusers")
    # TaylorSeer, warm-up 3 of 4 steps: the attention modules forecast step 3, everything else computes
    for setting in ("N=3 O=1", "N=5 O=2"):
        r = rows[("taylorseer", setting)]
        assert r["cost_ratio"] < 1 and r["lpips"] > 0
    assert rows[("fbcache", "t0.1")]["params"] == {"fbcache.threshold": 0.1}  # a runtime family's baseline
    assert len(doc["magcache_ratios"]) == STEPS and doc["magcache_ratios"][0] == 1.0
    assert doc["cache_dit"] is None or doc["cache_dit"]["available"] == HAS_CACHE_DIT

    ours = {r["file"]: r for r in doc["front"]["schedules"]}
    assert set(ours) == {"full.yaml", "steps2.yaml", "attn.yaml", "middle.yaml"}
    assert all(r["valid"] for r in ours.values()), ours
    assert ours["full.yaml"]["cost_ratio"] == 1.0 and ours["full.yaml"]["lpips"] == 0
    assert ours["full.yaml"]["tail"]["max"] == 0 and ours["full.yaml"]["run_heldout"] is None  # no metrics in the file
    assert ours["steps2.yaml"]["cost_ratio"] == pytest.approx(0.5)  # 2 of the reference's 4 calls
    assert ours["attn.yaml"]["cost_ratio"] < 1 and ours["middle.yaml"]["cost_ratio"] < 1
    assert doc["front"]["trials"] == {"total": 5} and doc["front"]["run"] == "default-run"

    assert len(doc["matches"]) == len(rows)
    for m in doc["matches"]:
        assert m["ours"] is None or m["ours_cost"] <= m["peer_cost"] + 1e-9
        if m["ratio"] is not None:
            assert m["ours_p90"] == ours[m["ours"]]["tail"]["p90"] and m["peer_p90"] is not None
        assert m["verdict"] == "win" or m["verdict"].startswith(("LOSS", "n/a"))
    s = doc["summary"]
    assert s["peer_points"] + s["exact_peers"] == len(rows) and s["wins"] + len(s["losses"]) == s["peer_points"]

    cmp = doc["ecad_vs_default"]
    assert cmp["equal_budget"] and cmp["hypervolume_ratio_ecad_over_default"] == pytest.approx(1.0)
    assert cmp["default"]["at_cost"] == cmp["ecad"]["at_cost"]

    text = peers_dit.tables(doc)
    for needle in ("| peer | setting | cost |", "| our schedule |", "| space | run | trials |", "goal (ours <= 0.7",
                   "and <= 1.0 x its p90", "| point | cost | mean | median | p90 | max | images > 0.05 |"):
        assert needle in text
    png = peers_dit.plot(doc, tmp_path / "out" / "peers.png")
    assert png.stat().st_size > 1000
    blob = json.dumps(doc, default=str)
    assert str(tmp_path) not in blob and str(ROOT) not in blob  # run directories by name only


def test_only_the_matched_front_schedules_are_scored_on_the_held_out_pairs(ev, tmp_path):
    fronts = [_run_dir(ev, tmp_path / "run", 5), _run_dir(ev, tmp_path / "other", 7)]
    doc = peers_dit.run(ev, methods=["fbcache"], quick=True, front=fronts, repeats=0)
    other = doc["more_fronts"][0]  # a second front, matched against the same peer points
    assert other["front"]["run"] == "other" and other["front"]["trials"] == {"total": 7}
    assert [m["ours"] for m in other["matches"]] == [m["ours"] for m in doc["matches"]]  # the same files
    assert "front other (7 trials): goal met at" in peers_dit.tables(doc)
    assert peers_dit.plot(doc, tmp_path / "matched.png").stat().st_size > 1000  # unscored files are left out
    rows = {r["file"]: r for r in doc["front"]["schedules"]}
    matched = {m["ours"] for m in doc["matches"] if m["ours"]}
    assert doc["front"]["scored"] == "matched" and matched
    assert {f for f, r in rows.items() if r["scored"]} == matched  # the rest: train side and cost only
    assert all("tail" not in rows[f] and rows[f]["cost_ratio"] > 0 for f in set(rows) - matched)
    assert rows["steps2.yaml"]["cost_ratio"] == pytest.approx(0.5)  # counted on the train split's calls


def test_matching_and_verdicts():
    def tail(mean, p90):
        return {"mean": mean, "p90": p90}

    front = [{"valid": True, "file": "a", "cost_ratio": 0.3, "train_lpips": 0.05, "lpips": 0.010,
              "tail": tail(0.010, 0.02), "run_heldout": None},
             {"valid": True, "file": "b", "cost_ratio": 0.5, "train_lpips": 0.05, "lpips": 0.006,
              "tail": tail(0.006, 0.01), "run_heldout": {"mean": 0.01, "p90": 0.04, "n": 16}},
             # better on the scored pairs, but the run's own validation ranks it below b: not picked
             {"valid": True, "file": "c", "cost_ratio": 0.5, "train_lpips": 0.001, "lpips": 0.001,
              "tail": tail(0.001, 0.002), "run_heldout": {"mean": 0.03, "p90": 0.03, "n": 64}},
             {"valid": False, "file": "d", "reason": "x"}]
    peers = [{"valid": True, "method": "p", "setting": s, "cost_ratio": c, "lpips": q, "tail": tail(q, q90)}
             for s, c, q, q90 in [("win", 0.5, 0.01, 0.012), ("worse", 0.35, 0.005, 0.03),
                                  ("close", 0.5, 0.008, 0.02), ("tail", 0.5, 0.01, 0.009), ("cheap", 0.2, 0.1, 0.2),
                                  ("exact", 1.0, 0.0, 0.0)]] + [{"valid": False}]
    got = {m["setting"]: m for m in peers_dit.match(peers, front)}
    assert got["win"]["ours"] == "b" and got["win"]["ratio"] == pytest.approx(0.6) and got["win"]["verdict"] == "win"
    assert got["win"]["p90_ratio"] == pytest.approx(0.01 / 0.012)
    assert got["worse"]["ours"] == "a" and got["worse"]["verdict"] == "LOSS: mean 2.00x > 0.7x"  # no validation: train
    assert got["close"]["verdict"] == "LOSS: mean 0.75x > 0.7x"
    assert got["tail"]["verdict"] == "LOSS: p90 1.11x > 1.0x"  # the mean alone would have won
    assert got["cheap"]["ours"] is None and got["cheap"]["verdict"].startswith("LOSS: no front")
    assert got["exact"]["verdict"].startswith("n/a")
    by_p90 = {m["setting"]: m for m in peers_dit.match(peers, front, stat="p90")}
    assert by_p90["win"]["ours"] == "c"  # the run's held-out p90 ranks c first
    assert peers_dit.hypervolume([(0.05, 0.5)], (0.1, 1.0)) == pytest.approx(0.025)
    assert peers_dit.hypervolume([(0.05, 0.5), (0.02, 0.8), (0.2, 0.1)], (0.1, 1.0)) == pytest.approx(0.016 + 0.015)


def test_cli_help_documents_the_run_and_refuses_unknown_peers(capsys):
    with pytest.raises(SystemExit) as e:
        peers_dit.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for needle in ("--front", "--ecad-front", "--quick", "--peers", "embedded:shapes-flux", "0.7"):
        assert needle in out
    with pytest.raises(SystemExit) as e:
        peers_dit.main(["--peers", "fbcache,teacache"])
    assert e.value.code == 2 and "teacache" in capsys.readouterr().err


def test_a_front_folder_without_exported_schedules_is_refused_before_any_measurement(capsys, tmp_path):
    (tmp_path / "ok" / "schedules").mkdir(parents=True)
    (tmp_path / "ok" / "schedules" / "t0001-steps10.yaml").write_text("format: cachesearch/schedule@4\n")
    (tmp_path / "empty" / "schedules").mkdir(parents=True)
    (tmp_path / "empty" / "schedules" / "index.yaml").write_text("schedules: []\n")
    for argv in (["--front", str(tmp_path / "ok"), str(tmp_path / "empty")],
                 ["--front", str(tmp_path / "ok"), "--ecad-front", str(tmp_path / "missing")]):
        with pytest.raises(SystemExit) as e:
            peers_dit.main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and "no exported schedules" in err and "Traceback" not in err
