"""The search progress display, fed events directly and rendered to a recording console."""

from __future__ import annotations

from rich.console import Console

from cachesearch.commands._progress import PlainProgress, RichProgress, search_progress


def _render(events) -> list[str]:
    console = Console(record=True, width=120)
    with RichProgress(console) as progress:
        events(progress)
    return [line.rstrip() for line in console.export_text().splitlines() if line.strip()]


def test_a_run_stopped_by_its_timeout_ends_at_its_real_count_and_every_stage_finishes() -> None:
    def events(p: RichProgress) -> None:
        p.stage("loading embedded")
        p.stage("reference images (train)", 1, 2)
        p.start(total=1000, done=0, timeout=330)
        for i in range(1, 558):
            p.trial(number=i, done=i, front=7, outcome=None)
        p.end()  # the timeout stopped it at 557
        p.stage("held-out evaluations", 2, 3)
        p.stage("held-out evaluations", 3, 3)
        p.stage("writing the report")

    lines = _render(events)
    assert len(lines) == 2, lines
    searching, report = lines
    assert searching.startswith("✓ searching") and "557 trials (of 1000)" in searching and "557/1000" not in searching
    assert "front 7" in searching and "ETA" not in searching
    assert searching.count("━") >= 20  # a complete bar
    assert report.startswith("✓ writing the report") and "━" not in report  # a status line, not an empty bar

    def heldout_last(p: RichProgress) -> None:
        p.start(total=10, done=0, timeout=None)
        p.trial(number=0, done=10, front=3, outcome=None)
        p.end()
        p.stage("held-out evaluations", 1, 3)
        p.stage("held-out evaluations", 3, 3)

    _, heldout = _render(heldout_last)
    assert heldout.startswith("✓ held-out evaluations") and "3/3" in heldout and heldout.count("━") >= 20


def test_a_run_that_reaches_its_budget_and_a_failure_before_the_search() -> None:
    def done(p: RichProgress) -> None:
        p.start(total=4, done=1, timeout=None)
        for i in range(2, 5):
            p.trial(number=i, done=i, front=2, outcome=None)
        p.end()

    (line,) = _render(done)
    assert line.startswith("✓ searching") and "4 trials" in line and "(of" not in line
    console = Console(record=True, width=120)
    try:
        with RichProgress(console) as p:
            p.stage("loading embedded")
            raise ValueError("boom")
    except ValueError:
        pass
    text = console.export_text()
    assert "✗ loading embedded" in text and "✓" not in text  # marked failed, not left spinning, never ticked


def test_a_failed_step_with_parts_is_marked_failed_not_done() -> None:
    console = Console(record=True, width=120)
    try:
        with RichProgress(console) as p:
            p.stage("load model", 0, 1)
            raise ValueError("boom")
    except ValueError:
        pass
    text = console.export_text()
    assert "✗ load model" in text and "✓" not in text, text
    console = Console(record=True, width=120)
    with RichProgress(console) as p:  # the run command stops the display itself before its one-line error
        p.stage("reference images (sharded on the Ray workers)")
        p.stop()
    text = console.export_text()
    assert "✗ reference images (sharded on the Ray workers)" in text and "✓" not in text, text


def test_plain_lines_when_the_output_is_not_a_terminal() -> None:
    console = Console(record=True, width=80, force_terminal=False)
    assert isinstance(search_progress(console), PlainProgress)
    assert isinstance(search_progress(Console(force_terminal=True)), RichProgress)
    p = PlainProgress(console, every=0)
    with p:
        p.stage("loading embedded")
        p.stage("reference images (train)", 0, 2)
        p.stage("reference images (train)", 2, 2)
        p.note("resuming run x (3 finished trials)")
        p.start(total=5, done=3, timeout=330)
        p.trial(number=3, done=4, front=2, outcome=None)
        p.trial(number=4, done=5, front=3, outcome=None)
        p.end()
        p.stage("held-out validation of the front", 0, 3)
        p.stage("x-t0004 (heldout)", 0, 4)  # the evaluator's own steps inside it: details, not new steps
        p.stage("x-t0004 (heldout)", 4, 4)
        p.stage("held-out validation of the front", 3, 3)
        p.stage("writing the report")
    lines = console.export_text().splitlines()
    assert lines[:5] == ["loading embedded …", "reference images (train): 0/2", "reference images (train): 2/2",
                         "• resuming run x (3 finished trials)", "searching: 3/5 trials, stops after 330 s"]
    assert lines[5].startswith("searching: 4/5 trials, front 2, 0:00 elapsed, ETA ")
    assert lines[6].startswith("searching: 5/5 trials, front 3, 0:00 elapsed, ETA ")
    assert lines[7:] == ["searched: 5 trials, front 3, in 0:00", "held-out validation of the front: 0/3",
                         "  x-t0004 (heldout): 0/4", "held-out validation of the front: 3/3", "writing the report …"]
    console = Console(record=True, width=80, force_terminal=False)
    try:
        with PlainProgress(console) as p:
            p.stage("loading embedded")
            raise ValueError("boom")
    except ValueError:
        pass
    assert console.export_text().splitlines() == ["loading embedded …", "failed: loading embedded"]


def test_plain_lines_are_throttled() -> None:
    console = Console(record=True, width=80, force_terminal=False)
    p = PlainProgress(console, every=3600)
    p.start(total=1000, done=0, timeout=None)
    for i in range(1, 1000):
        p.trial(number=i, done=i, front=1, outcome=None)
    p.trial(number=1000, done=1000, front=1, outcome=None)  # the last one always prints
    lines = console.export_text().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("searching: 1000/1000 trials, front 1"), lines


def test_details_of_a_step_are_throttled_in_plain_lines() -> None:
    console = Console(record=True, width=80, force_terminal=False)
    p = PlainProgress(console, every=3600)
    for i in range(20):
        p.stage("held-out validation of the front", i, 20)
        p.stage(f"x-t{i:04d} (heldout)", 0, 4)
        p.stage(f"x-t{i:04d} (heldout)", 4, 4)
    p.stage("held-out validation of the front", 20, 20)
    p.stage("held-out validation of baselines", 0, 5)
    assert console.export_text().splitlines() == [
        "held-out validation of the front: 0/20", "held-out validation of the front: 20/20",
        "held-out validation of baselines: 0/5"]
