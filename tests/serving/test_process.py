"""The `seqserve serve` process: start-up failures, any-free-port binding, structured logs."""

from __future__ import annotations

import json
import subprocess
import sys

from seqserve.v1 import classifier_pb2
from tests.serving.server_process import REPO_ROOT, ServerProcess

SECRET_TEXT = "my neighbour's phone number is 555 0100"


def run_serve(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "seqserve.cli", "serve", "--port", "0", "--metrics-port", "0"]
    command += ["--rest-port", "0", *args]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)


def test_bad_flag_value_exits_2_naming_the_flag():
    result = run_serve("--max-batch-size", "zero")
    assert result.returncode == 2
    assert "--max-batch-size='zero'" in result.stderr


def test_repository_without_models_exits_1_with_the_reason(tmp_path):
    result = run_serve("--model-repository", str(tmp_path))
    assert result.returncode == 1
    assert "the repository is empty" in result.stderr


def classify_and_stop(server: ServerProcess) -> list[dict]:
    response = server.stub.Classify(
        classifier_pb2.ClassifyRequest(model="sarcasm-gru", texts=[SECRET_TEXT]), timeout=10
    )
    assert len(response.predictions) == 1
    assert server.terminate() == 0
    return [json.loads(line) for line in server.log_path.read_text().splitlines()]


def test_port_zero_binds_free_ports_and_texts_stay_out_of_debug_logs(tiny_model_repository, tmp_path):
    with ServerProcess(
        tiny_model_repository, tmp_path, "--port", "0", "--metrics-port", "0", "--rest-port", "0",
        "--log-level", "debug",
    ) as server:  # fmt: skip
        assert not server.address.endswith(":0") and not server.metrics_url.endswith(":0/metrics")
        assert not server.rest_url.endswith(":0")
        records = classify_and_stop(server)
    classify = [r for r in records if r["msg"] == "classify"]
    assert classify == [{**classify[0], "model": "sarcasm-gru", "version": 1, "text_count": 1}]
    assert "texts" not in classify[0]
    assert SECRET_TEXT not in server.log_path.read_text()


def test_log_texts_puts_texts_in_debug_logs(tiny_model_repository, tmp_path):
    with ServerProcess(tiny_model_repository, tmp_path, "--log-level", "debug", "--log-texts") as server:
        records = classify_and_stop(server)
    assert [r["texts"] for r in records if r["msg"] == "classify"] == [[SECRET_TEXT]]
