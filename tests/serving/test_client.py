"""`seqserve classify` against the running server."""

from __future__ import annotations

import subprocess

import pytest

from seqserve.cli import main
from seqserve.metric_names import COMPUTE_TEXTS
from serving.announce import client_command
from serving.settings import Settings
from tests.serving.metrics_text import delta
from tests.serving.reference import read_config, reference_probabilities
from tests.serving.server_process import REPO_ROOT
from tests.serving.test_kserve_v2 import MODELS

TEXTS = ["mom announces she is finally proud", "stock markets close higher on tuesday"]


def test_classify_prints_a_row_per_text_with_every_label_probability(server, tiny_model_repository, capsys):
    assert main(["classify", "--address", server.address, "--model", "sarcasm-gru", *TEXTS]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "sarcasm-gru v1"
    expected = reference_probabilities(tiny_model_repository, "sarcasm-gru", TEXTS)
    rows = out.splitlines()[3:]
    for text, row, probabilities in zip(TEXTS, rows, expected, strict=True):
        assert row.startswith(text)
        assert f"not_sarcastic={probabilities[0]:.4f} sarcastic={probabilities[1]:.4f}" in row


def test_compare_prints_models_side_by_side_with_latency(server, capsys):
    assert (
        main(
            [
                "classify",
                "--address",
                server.address,
                "--compare",
                "--model",
                "sarcasm-gru,sarcasm-flatten",
                *TEXTS,
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    header = lines[0]
    assert header.index("sarcasm-gru v1 (onnx)") < header.index("sarcasm-flatten v1 (onnx)")
    assert [line.split("  ")[0] for line in lines[2:4]] == TEXTS
    for line, title in zip(lines[4:], ["end to end", "queue wait", "compute per text"], strict=True):
        assert line.startswith(title) and line.count(" ms") == 2
        assert all(float(value) >= 0 for value in line.removeprefix(title).split()[::2])


def test_compare_speed_ranks_the_models_beside_their_architecture_and_accuracy(
    server, tiny_model_repository, capsys
):
    argv = ["classify", "--address", server.address, "--compare", "--speed", "--repeat", "3", *TEXTS]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    title = lines.index(next(line for line in lines if line.startswith("model ")))
    rows = [line.split() for line in lines[title + 2 : title + 2 + len(MODELS)]]
    assert sorted(row[0] for row in rows) == MODELS
    compute = [float(row[3]) for row in rows]
    assert compute == sorted(compute) and compute[0] > 0  # fastest first
    assert [float(row[4]) for row in rows] == pytest.approx([c / compute[0] for c in compute], rel=0.02)
    for model, architecture, accuracy, *_ in rows:
        assert architecture == model.split("-")[1]
        assert accuracy == f"{read_config(tiny_model_repository, model).training.test_accuracy:.4f}"
    assert lines[-1].startswith("medians of 3 compare(s) of 5 round(s)")  # --speed's rounds unless set


def test_compare_rounds_run_each_model_that_many_times_and_stop_at_the_limit(server, capsys):
    compare = ["classify", "--address", server.address, "--compare", "--model", "sarcasm-gru"]
    before = server.metrics_text()
    assert main([*compare, "--rounds", "3", *TEXTS]) == 0
    after = server.metrics_text()
    assert delta(before, after, COMPUTE_TEXTS + "_total", model="sarcasm-gru") == 3 * len(TEXTS)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[0] for line in lines[2:4]] == TEXTS  # one answer per text
    limit = Settings().max_compare_rounds
    assert main([*compare, "--rounds", str(limit + 1), *TEXTS]) == 1
    message = f"INVALID_ARGUMENT: rounds is {limit + 1}; the limit is {limit} (--max-compare-rounds)"
    assert message in capsys.readouterr().err


def test_errors_are_reported_with_their_status(server, capsys):
    assert main(["classify", "--address", server.address, "--model", "imdb-lstm", "text"]) == 1
    assert "NOT_FOUND: model 'imdb-lstm' is not loaded" in capsys.readouterr().err


def test_the_classify_command_the_server_prints_runs_as_pasted(server, monkeypatch):
    """Regression: the start-up banner said `seqserve classify ...`, which is not on PATH after
    `make serve` (it lives in .venv/bin)."""
    monkeypatch.setenv("PATH", "/usr/local/bin:/usr/bin:/bin")
    monkeypatch.chdir(REPO_ROOT)
    command = [client_command(), "classify", "--address", server.address, "--model", "sarcasm-gru", "hi"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "sarcasm-gru v1"
