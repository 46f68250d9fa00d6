"""A short run of the soak test (bench/soak.py): no errors under high concurrency, RSS recorded.

`make soak` runs it for half an hour; here 12 s against the tiny repository, asserting zero errors and
only a generous memory bound (a few seconds of windows are too short for the 1 % growth target).
"""

from __future__ import annotations

import json

from bench import soak
from tests.conftest import DATA_DIR

SECONDS = 12
RSS_GROWTH_BOUND = 0.5


def test_a_short_soak_has_no_errors_and_bounded_memory(tiny_model_repository, tmp_path):
    report, figures = tmp_path / "soak.md", tmp_path / "soak.json"
    soak.main(
        [
            "--models", str(tiny_model_repository), "--seconds", str(SECONDS), "--concurrency", "32",
            "--texts", str(DATA_DIR / "sarcasm" / "sarcasm.json"),
            "--report", str(report), "--json", str(figures),
        ]
    )  # fmt: skip
    result = json.loads(figures.read_text())
    assert result["errors"] == {}
    assert result["requests"] > 100
    assert result["rss_judged_start_bytes"] > 0 and result["rss_growth"] < RSS_GROWTH_BOUND
    assert len(result["rss_bytes"]) == 4  # 12 s in windows of 3 s, one sample after each
    text = report.read_text()
    assert "| errors | 0" in text and "RSS growth over the judged span" in text
    assert "judged: the last 3 windows (9 s)" in text  # all but the warm-up window
    assert "| server log lines at WARNING or above | 0 |" in text
    print(f"soak {SECONDS} s: {result}")
