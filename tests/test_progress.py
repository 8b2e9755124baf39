"""labkd.progress: bars follow LABKD_PROGRESS, and RunProgress reports every finished run."""

from __future__ import annotations

from labkd.progress import NoBar, RunProgress, progress_bar, show_progress


def test_progress_follows_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("LABKD_PROGRESS", "0")
    assert not show_progress() and isinstance(progress_bar(5, "x"), NoBar)
    monkeypatch.setenv("LABKD_PROGRESS", "1")
    bar = progress_bar(5, "x", leave=False)
    assert not isinstance(bar, NoBar) and bar.total == 5
    bar.close()
    assert isinstance(progress_bar(5, "x", progress=False), NoBar)   # an explicit False wins
    assert isinstance(progress_bar(0, "x", progress=True), NoBar)    # nothing to count


def test_run_progress_calls_back_after_every_run() -> None:
    seen = []
    runs = RunProgress(3, "students", progress=False, on_run=lambda done, total: seen.append((done, total)))
    for label in ("a", "b", "c"):
        runs.step(label)
    runs.close()
    assert seen == [(1, 3), (2, 3), (3, 3)] and runs.done == 3
