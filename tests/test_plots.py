"""Shared figures of labkd.plots."""

from __future__ import annotations

import pytest

from labkd import plots


def test_findings_table_grows_with_wrapped_text() -> None:
    short = plots.findings_table([{"claim": "x", "paper": "y", "this run": "z"}])
    long = plots.findings_table([{"claim": "x", "paper": "y", "this run": "z<br>w " + "word " * 80}])
    assert list(short.data[0].header.values) == ["<b>claim</b>", "<b>paper</b>", "<b>this run</b>"]
    assert long.layout.height > short.layout.height
    with pytest.raises(ValueError, match="findings is empty"):
        plots.findings_table([])
