"""Dump the first N trials (params, policy, baseline, values) of run_search on the tiny model, for old vs new code.

usage: PYTHONPATH=<tree> python tests/search/check_proposals.py OUT.json   (N=40 by default; run on the old and
the new tree, then `cmp` the two files: same seed, same candidates in the same order)
"""
import hashlib
import json
import math
import os
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import optuna  # noqa: E402
import torch  # noqa: E402
from diffusers import DPMSolverMultistepScheduler  # noqa: E402

from cachesearch.evaluate import EvalConfig, EvalResult, Evaluator  # noqa: E402
from cachesearch.models._loaders import LoadedModel  # noqa: E402
from cachesearch.search import RunSettings, run_search  # noqa: E402
from tests._tiny import tiny_sd_pipeline  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)
torch.set_num_threads(1)
STEPS = 8
N = int(os.environ.get("N", "40"))


class Fake(Evaluator):
    def evaluate(self, schedule, *, split="train", measure=None):
        cost = self.cost_ratio(schedule)
        masks = schedule.masks()
        reuse = sum(m.count(".") for m in masks.values()) / max(1, sum(map(len, masks.values())))
        missing = 1 - schedule.num_steps / self.num_inference_steps
        jitter = int(hashlib.sha256(str(sorted(masks.items())).encode()).hexdigest()[:6], 16) / 16**6
        quality = 0.2 * reuse + 0.5 * missing**2 + 0.001 * jitter
        return EvalResult(schedule=schedule.name, split=split, valid=True, reason=None, metric=self.metric_name,
                          quality=quality, psnr=30.0, ssim=0.9, accuracy=None, cost_ratio=cost, latency_ms=None,
                          baseline_ms=None, speedup=None, latency_spread=None, n_images=2, seconds=0.0,
                          prompts=self.prompt_set(split).digest(), random_weights=True)


def settings(**kw):
    try:
        return RunSettings(steps=STEPS, **kw)
    except TypeError:
        return RunSettings(num_steps=STEPS, **kw)


def main(out):
    result = {}
    cache = tempfile.mkdtemp()
    for sched in ("ddim", "dpm"):
        pipe = tiny_sd_pipeline(seed=0, scheduler="ddim", blocks=2)
        if sched == "dpm":
            pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
        model = LoadedModel(pipe=pipe, denoiser=pipe.unet, source=f"tiny:{sched}", random_weights=True,
                            family="unet2d")
        for space in ("joint", "deepcache", "blocks", "steps"):
            with tempfile.TemporaryDirectory() as tmp:
                ev = Fake(EvalConfig(model="tiny", num_inference_steps=STEPS, n_train=2, n_heldout=2, height=32,
                                     width=32, cache_dir=cache), model=model)
                s = settings(name="cmp", model="tiny", n_train=2, n_heldout=2, trials=N, timeout=None,
                             seed=0, space=space, out=tmp)
                run_search(s, evaluator=ev, export=False, space_given=True)
                from optuna.storages.journal import JournalFileBackend, JournalStorage
                study = optuna.load_study(study_name="cmp", storage=JournalStorage(JournalFileBackend(
                    os.path.join(tmp, "cmp", "study.journal"))))
                rows = []
                for t in study.get_trials()[:N]:
                    rows.append({"number": t.number, "state": t.state.name, "params": t.params,
                                 "baseline": t.user_attrs.get("baseline"), "policy": t.user_attrs.get("policy"),
                                 "mask_key": t.user_attrs.get("mask_key"), "values": t.values,
                                 "dup": t.user_attrs.get("duplicate_of")})
                result[f"{sched}/{space}"] = {"trials": rows,
                                              "baselines": study.user_attrs.get("cachesearch.baselines")}
                print(sched, space, len(rows), file=sys.stderr)
    with open(out, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True, default=lambda x: None if isinstance(x, float) and
                  math.isnan(x) else str(x))


main(sys.argv[1])
