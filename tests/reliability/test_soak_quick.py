"""A short run of the soak test (bench/soak.py): every protocol and explanations without an error, the
memory probe's snapshots compared, the RSS curve drawn, and an exit status that follows the verdict.

`make soak` runs it for an hour; here 12 s (12 windows of 1 s) against the tiny repository, with only a
generous memory bound: windows of a second are too short for the 1 % growth target.
"""

from __future__ import annotations

import json

from bench import soak
from tests.conftest import DATA_DIR

SECONDS = 12
RSS_GROWTH_BOUND = 0.5
MODELS = ("sarcasm-flatten", "sarcasm-gru")


def test_a_short_soak_has_no_errors_and_reports_where_memory_grew(tiny_model_repository, tmp_path):
    report, figures, plot = tmp_path / "soak.md", tmp_path / "soak.json", tmp_path / "soak-rss.png"
    status = soak.main(
        [
            "--models", str(tiny_model_repository), "--model", MODELS[0], "--model", MODELS[1],
            "--seconds", str(SECONDS), "--texts", str(DATA_DIR / "sarcasm" / "sarcasm.json"),
            "--report", str(report), "--json", str(figures),
        ]
    )  # fmt: skip
    result = json.loads(figures.read_text())
    print(f"soak {SECONDS} s: {result}")
    assert result["errors"] == {} and result["warnings"] == []
    assert set(result["pairs"]) == {f"{m} {p}" for m in MODELS for p in soak.PROTOCOLS}
    assert all(counts["ok"] > 0 for counts in result["pairs"].values())
    assert result["explains_ok"] > 0
    assert len(result["rss_bytes"]) == 12 and result["rss_growth"] < RSS_GROWTH_BOUND
    # untraced through window 1, then tracemalloc's own tables are part of the RSS
    assert result["tracemalloc_bytes"][0] < 4096 < min(result["tracemalloc_bytes"][1:])
    assert result["snapshots"] == [2, 6, 12] and len(result["growth_sites"]) == 2
    assert status == (0 if result["rss_growth"] < soak.RSS_TARGET else 1)
    assert plot.read_bytes().startswith(b"\x89PNG")
    text = report.read_text()
    assert "![RSS over the run](soak-rss.png)" in text
    assert (
        "| errors | 0 | 0 | met |" in text
        and "| server log lines at WARNING or above | 0 | 0 | met |" in text
    )
    assert (
        "Judged: the last 8 windows" in text and "#### after-window-02.tracemalloc -> after-window-06" in text
    )
