"""``--profile-prompts``: the run's block-change profile averages over more train-side prompts than a candidate is
scored on (8 misplace the early recomputes of profile-placed masks), and a resumed run keeps the stored one."""

from __future__ import annotations

from dataclasses import replace

from cachesearch.evaluate import profile_blocks
from cachesearch.search import run_search
from cachesearch.search.study import ATTR_PROFILE


def test_the_run_profiles_the_first_prompts_of_the_train_pool(settings, make_evaluator) -> None:
    s = settings(trials=2, profile_prompts=5)
    ev = make_evaluator()  # 2 train images
    summary = run_search(s, evaluator=ev, export=False)
    assert summary.completed
    import optuna

    from cachesearch.search.study import open_storage

    study = optuna.load_study(study_name=s.name, storage=open_storage(str(s.run_dir / "study.journal")))
    stored = study.user_attrs[ATTR_PROFILE]
    want = profile_blocks(make_evaluator(), granularity="stage", n=5)
    assert [list(r) for r in want.changes] == stored["changes"]
    assert want != profile_blocks(make_evaluator(), granularity="stage")  # not the 2-image one
    run_search(replace(s, trials=3, profile_prompts=2), evaluator=make_evaluator(), export=False)  # resumed
    again = optuna.load_study(study_name=s.name, storage=open_storage(str(s.run_dir / "study.journal")))
    assert again.user_attrs[ATTR_PROFILE]["changes"] == stored["changes"]
