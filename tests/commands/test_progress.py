"""The search progress display, fed events directly and rendered to a recording console."""

from __future__ import annotations

from rich.console import Console

from cachesearch.commands._common import RichProgress


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
    assert "loading" not in console.export_text()  # an unfinished stage is not left spinning on screen
