"""The load generator against the real server subprocess: counts, percentiles, rate, server view."""

from __future__ import annotations

import asyncio
import json
import urllib.parse

import pytest

from seqserve.loadtest.cli import LoadTestConfig, loadtest_main, run_loadtest
from seqserve.loadtest.report import QUANTILES, Summary
from seqserve.loadtest.runner import LoadSpec
from seqserve.loadtest.targets import CallFailed
from tests.conftest import DATA_DIR

SARCASM = DATA_DIR / "sarcasm" / "sarcasm.json"
STAGES = {"queue_wait", "tokenize", "inference", "request"}


def run(server, spec: LoadSpec, models: tuple[str, ...] = (), protocol: str = "seqserve") -> list[Summary]:
    config = LoadTestConfig(
        address=urllib.parse.urlsplit(server.rest_url).netloc if protocol == "rest" else server.address,
        metrics_url=server.metrics_url,
        models=models,
        protocol=protocol,
        texts_path=SARCASM,
        spec=spec,
    )
    return asyncio.run(run_loadtest(config))


def test_closed_loop_over_every_listed_model(loadtest_server):
    spec = LoadSpec(concurrency=4, duration_s=1.5, warmup_s=0.3, batch=3, channels=2)
    summaries = run(loadtest_server, spec)
    assert [s.model for s in summaries] == sorted(loadtest_server.ready["models"])
    for s in summaries:
        assert s.ok > 0 and s.errors == {}
        assert s.sent == s.ok + sum(s.errors.values())
        assert s.texts_per_s == pytest.approx(3 * s.requests_per_s)
        latencies = [s.latency_ms[q] for q in (*QUANTILES, "max")]
        assert latencies == sorted(latencies) and latencies[0] > 0
        # the server-side view: every stage present, and exactly the measured requests counted
        assert set(s.server_ms) == STAGES, s.server_note
        assert s.server_ms["request"]["count"] == s.ok
        assert s.server_ms["queue_wait"]["count"] == s.ok
        for figures in s.server_ms.values():
            assert 0 < figures["p50"] <= figures["p99"]
        assert 1 <= s.server_mean_batch_size <= 4 * 3  # at most all outstanding requests together
        # the model's own cost: a text's share of its batch, less than the request's time in the server
        assert 0 < s.server_compute_per_text_ms < s.server_ms["request"]["mean"]
        assert s.client_cpu_percent > 0


def test_open_loop_keeps_its_rate_when_the_server_keeps_up(loadtest_server):
    (s,) = run(loadtest_server, LoadSpec(rate=50, duration_s=3, warmup_s=0.2), models=("sarcasm-flatten",))
    assert s.sent == 150 == s.ok + sum(s.errors.values())
    assert s.send_rate_per_s == pytest.approx(50, rel=0.05)
    assert s.requests_per_s == pytest.approx(50, rel=0.05)
    assert s.server_ms["request"]["count"] == s.ok


@pytest.mark.parametrize("protocol", ["v2", "rest"])
def test_kserve_v2_protocols_list_and_load_every_model(loadtest_server, protocol):
    spec = LoadSpec(concurrency=2, duration_s=0.5, warmup_s=0.1, batch=2, channels=2)
    summaries = run(loadtest_server, spec, protocol=protocol)
    assert [s.model for s in summaries] == sorted(loadtest_server.ready["models"])
    for s in summaries:
        assert s.ok > 0 and s.errors == {} and s.sent == s.ok
        assert s.server_ms["request"]["count"] == s.ok  # V2 requests go through the same metrics


def test_tf_serving_predict_loads_the_named_models(loadtest_server):
    spec = LoadSpec(concurrency=2, duration_s=0.5, warmup_s=0.1, batch=2, channels=2)
    (s,) = run(loadtest_server, spec, models=("sarcasm-flatten",), protocol="tfs")
    assert s.ok > 0 and s.errors == {} and s.sent == s.ok
    assert s.server_ms["request"]["count"] == s.ok  # Predict goes through the same metrics
    with pytest.raises(CallFailed, match="--model"):
        run(loadtest_server, spec, protocol="tfs")  # TF Serving's API lists no models


def test_failures_are_counted_by_status_code_in_the_json_output(loadtest_server, capsys):
    argv = [
        "--address", loadtest_server.address, "--metrics-url", "", "--texts", str(SARCASM),
        "--model", "sarcasm-nope", "--concurrency", "2", "--duration", "0.5", "--warmup", "0", "--json",
    ]  # fmt: skip
    assert loadtest_main(argv) == 0
    output = json.loads(capsys.readouterr().out)
    assert output["config"]["mode"] == "closed"
    (result,) = output["results"]
    assert result["ok"] == 0 and result["sent"] > 0
    assert result["errors"] == {"NOT_FOUND": result["sent"]}
    assert result["latency_ms"]["p50"] is None  # no successful request: no latency, not zero
    assert result["server_ms"] == {} and "metrics-url" in result["server_note"]


def test_table_output_names_every_model(loadtest_server, capsys):
    argv = [
        "--address", loadtest_server.address, "--texts", str(SARCASM), "--duration", "0.3", "--warmup", "0",
        "--metrics-url", loadtest_server.metrics_url,
    ]  # fmt: skip
    assert loadtest_main(argv) == 0
    table = capsys.readouterr().out
    models = loadtest_server.ready["models"]
    for model in models:
        # its client row, a row per server stage, and its row side by side with the other models
        assert sum(line.startswith(model) for line in table.splitlines()) == 2 + len(STAGES)
    lines = table.splitlines()
    title = next(i for i, line in enumerate(lines) if line.startswith("models side by side"))
    rows = [line.split() for line in lines[title + 3 : title + 3 + len(models)]]
    assert sorted(row[0] for row in rows) == sorted(models)
    compute = [float(row[1]) for row in rows]
    assert compute == sorted(compute) and compute[0] > 0  # fastest first
    assert float(rows[0][2]) == 1.0 and all(float(row[2]) >= 1.0 for row in rows)
    for row in rows:
        assert 0 < float(row[3]) <= float(row[4])  # end-to-end p50 <= p99
