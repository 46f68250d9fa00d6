"""Traces of the real server, exported over OTLP/gRPC to a real receiver: a caller's traceparent is
continued, the batch is a span linked to each request, the stages are events on the two, and the
latency histograms carry the trace ids as exemplars on /metrics in OpenMetrics (one process, and
merged over `--workers 2`); a call the sampler leaves out records nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton
import yaml
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from seqserve import tracing as names
from seqserve.loadtest import trace_report
from seqserve.loadtest.cli import loadtest_main
from seqserve.loadtest.trace_receiver import SPAN_KIND_SERVER, ReceivedSpan, TraceReceiver
from seqserve.loadtest.trace_report import Stage, stages
from serving import tracing
from tests.serving.conftest import SARCASM_TEXTS
from tests.serving.rest_client import call
from tests.serving.server_process import REPO_ROOT, ServerProcess, free_port
from tests.serving.test_prometheus import DASHBOARD, scraping

MODEL = "sarcasm-gru"
TEXTS = SARCASM_TEXTS[:3]
SPANS_TIMEOUT_S = 15.0
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
GRAFANA_DATASOURCES = REPO_ROOT / "deploy" / "grafana" / "datasources.yaml"


def exporting_to(endpoint: str) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}


@pytest.fixture(scope="module")
def receiver() -> Iterator[TraceReceiver]:
    with TraceReceiver() as instance:
        yield instance


@pytest.fixture(scope="module")
def traced_server(
    tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory, receiver: TraceReceiver
) -> Iterator[ServerProcess]:
    with ServerProcess(
        tiny_model_repository, tmp_path_factory.mktemp("traced"), env=exporting_to(receiver.endpoint)
    ) as server:
        yield server


class Caller:
    """A client span's ids, as a traceparent header carries them."""

    def __init__(self, index: int) -> None:
        self.trace_id = f"{index:032x}"[-32:].replace("0", "c", 8)
        self.span_id = f"{index:016x}".replace("0", "d", 4)
        self.traceparent = f"00-{self.trace_id}-{self.span_id}-01"


def server_span_of(caller: Caller, spans: list[ReceivedSpan]) -> ReceivedSpan | None:
    found = [s for s in spans if s.trace_id == caller.trace_id and s.parent_span_id == caller.span_id]
    assert len(found) <= 1, found
    return found[0] if found else None


def batch_of(server: ReceivedSpan, spans: list[ReceivedSpan]) -> ReceivedSpan | None:
    """The batch span linked to the server span (a request is in one batch)."""
    batches = [
        s
        for s in spans
        if s.name == names.BATCH_SPAN and any(link.span_id == server.span_id for link in s.links)
    ]
    assert len(batches) <= 1, batches
    return batches[0] if batches else None


def stages_of(server: ReceivedSpan, batch: ReceivedSpan | None) -> dict[str, Stage]:
    """The stages recorded on the server span and on its batch's span, by name."""
    return {stage.name: stage for span in (server, batch) if span is not None for stage in stages(span)}


EVERY_STAGE = {names.ADMISSION, names.QUEUE_WAIT, names.TOKENIZE, names.RUNTIME}


def wait_for_trace(
    receiver: TraceReceiver, caller: Caller
) -> tuple[ReceivedSpan, ReceivedSpan, dict[str, Stage]]:
    """The caller's server span, its batch and their stages, once all have arrived."""

    def complete(spans: list[ReceivedSpan]) -> bool:
        server = server_span_of(caller, spans)
        return server is not None and set(stages_of(server, batch_of(server, spans))) >= EVERY_STAGE

    spans = receiver.wait_for(complete, SPANS_TIMEOUT_S)
    server = server_span_of(caller, spans)
    assert server is not None, f"no server span of {caller.traceparent}; got {[s.name for s in spans][-20:]}"
    batch = batch_of(server, spans)
    assert batch is not None, f"no batch span links to {caller.traceparent}"
    found = stages_of(server, batch)
    assert set(found) >= EVERY_STAGE, sorted(found)
    return server, batch, found


def v2_infer(server: ServerProcess, texts: list[str], model: str = MODEL, **headers: str) -> np.ndarray:
    client = triton.InferenceServerClient(server.address)
    try:
        text_input = triton.InferInput("text", [len(texts)], "BYTES")
        text_input.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_))
        result = client.infer(model, [text_input], headers=headers or None)
        return result.as_numpy("probabilities")
    finally:
        client.close()


def assert_request_trace(
    server_span: ReceivedSpan, batch: ReceivedSpan, stages: dict[str, Stage], text_count: int
) -> None:
    """The server span names the model; its admission and queue wait lie inside it, in that order; its
    batch (linked to it, a span of the same process) holds tokenize then runtime, and ends before it."""
    assert server_span.kind == SPAN_KIND_SERVER
    assert server_span.attributes[tracing.MODEL_NAME] == MODEL
    assert server_span.attributes[tracing.MODEL_VERSION] == "1"
    assert server_span.attributes[tracing.MODEL_RUNTIME] == "onnx"
    assert server_span.attributes[tracing.TEXT_COUNT] == text_count
    assert server_span.attributes["server.address"] == "127.0.0.1"
    assert batch.attributes[names.BATCH_SIZE] >= text_count
    assert batch.attributes[names.PADDED_LENGTH] > 0
    assert batch.parent_span_id and tracing.MODEL_NAME not in batch.attributes  # its parent names it
    assert {stage.name for stage in trace_report.stages(server_span)} == {names.ADMISSION, names.QUEUE_WAIT}
    assert {stage.name for stage in trace_report.stages(batch)} == {names.TOKENIZE, names.RUNTIME}
    admission, queue_wait = stages[names.ADMISSION], stages[names.QUEUE_WAIT]
    assert server_span.start_ns == admission.start_ns <= admission.end_ns <= queue_wait.start_ns
    assert queue_wait.start_ns <= queue_wait.end_ns <= server_span.end_ns
    tokenize, runtime = stages[names.TOKENIZE], stages[names.RUNTIME]
    assert batch.start_ns == queue_wait.end_ns == tokenize.start_ns
    assert tokenize.start_ns <= tokenize.end_ns <= runtime.start_ns <= runtime.end_ns <= batch.end_ns
    assert batch.end_ns <= server_span.end_ns
    assert server_span.resource == batch.resource


def test_v2_grpc_infer_continues_the_callers_trace(traced_server, receiver) -> None:
    caller = Caller(1)
    probabilities = v2_infer(traced_server, TEXTS, traceparent=caller.traceparent)
    assert probabilities.shape == (3, 2)
    server_span, batch, found = wait_for_trace(receiver, caller)
    assert server_span.name == "inference.GRPCInferenceService/ModelInfer"
    assert server_span.attributes["rpc.system"] == "grpc"
    assert server_span.attributes["rpc.service"] == "inference.GRPCInferenceService"
    assert server_span.attributes["rpc.method"] == "ModelInfer"
    assert server_span.attributes["rpc.grpc.status_code"] == 0
    assert server_span.attributes["server.port"] == int(traced_server.address.rsplit(":", 1)[1])
    assert server_span.status_code == 0  # unset: not an error
    assert_request_trace(server_span, batch, found, 3)
    assert batch.parent_span_id == server_span.span_id  # the batch's only sampled request
    instance = server_span.resource["service.instance.id"]
    assert (
        instance.endswith(f"-{traced_server.ready['pid']}")
        and server_span.resource["service.name"] == "seqserve"
    )


def test_v2_rest_infer_continues_the_callers_trace(traced_server, receiver) -> None:
    caller = Caller(2)
    body = {"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": TEXTS}]}
    reply = call(
        f"{traced_server.rest_url}/v2/models/{MODEL}/infer", body, {"traceparent": caller.traceparent}
    )
    assert reply.status == 200, reply.body
    server_span, batch, found = wait_for_trace(receiver, caller)
    assert server_span.name == "POST /v2/models/{model}/infer"
    assert server_span.attributes["http.request.method"] == "POST"
    assert server_span.attributes["http.route"] == "/v2/models/{model}/infer"
    assert server_span.attributes["http.response.status_code"] == 200
    assert server_span.attributes["server.port"] == int(traced_server.rest_url.rsplit(":", 1)[1])
    assert_request_trace(server_span, batch, found, 3)


def test_a_refused_request_is_a_span_with_its_status_and_not_a_server_error(traced_server, receiver) -> None:
    grpc_caller, rest_caller = Caller(3), Caller(4)
    with pytest.raises(InferenceServerException, match="not loaded"):
        v2_infer(traced_server, TEXTS, model="no-such-model", traceparent=grpc_caller.traceparent)
    reply = call(
        f"{traced_server.rest_url}/v2/models/no-such-model/infer",
        {"inputs": []},
        {"traceparent": rest_caller.traceparent},
    )
    assert reply.status in (400, 404)

    def both(spans: list[ReceivedSpan]) -> bool:
        return all(server_span_of(c, spans) for c in (grpc_caller, rest_caller))

    spans = receiver.wait_for(both, SPANS_TIMEOUT_S)
    grpc_span, rest_span = server_span_of(grpc_caller, spans), server_span_of(rest_caller, spans)
    assert grpc_span is not None and rest_span is not None
    assert grpc_span.attributes["rpc.grpc.status_code"] == 5  # NOT_FOUND
    assert rest_span.attributes["http.response.status_code"] == reply.status
    assert grpc_span.status_code == rest_span.status_code == 0  # the client's mistake


def test_a_call_the_sampler_leaves_out_records_nothing(traced_server, receiver) -> None:
    """The default sampler follows a caller's traceparent that is not sampled (flags 00): neither its
    gRPC nor its REST call leaves a span or an exemplar; a sampled call after them leaves both (the
    server exports its spans in the order they end)."""
    grpc_caller, rest_caller, sampled = Caller(6), Caller(7), Caller(8)
    v2_infer(traced_server, TEXTS, traceparent=grpc_caller.traceparent.removesuffix("01") + "00")
    body = {"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": TEXTS}]}
    headers = {"traceparent": rest_caller.traceparent.removesuffix("01") + "00"}
    reply = call(f"{traced_server.rest_url}/v2/models/{MODEL}/infer", body, headers)
    assert reply.status == 200, reply.body
    left_out = {grpc_caller.trace_id, rest_caller.trace_id}
    _, text = scrape(traced_server.metrics_url, OPENMETRICS)
    histograms = ("seqserve_request_duration_seconds", "seqserve_tokenize_duration_seconds")
    assert not left_out & {trace_id for name in histograms for trace_id in exemplar_trace_ids(text, name)}
    v2_infer(traced_server, TEXTS, traceparent=sampled.traceparent)
    wait_for_trace(receiver, sampled)
    assert not left_out & {span.trace_id for span in receiver.spans()}
    _, text = scrape(traced_server.metrics_url, OPENMETRICS)
    assert sampled.trace_id in exemplar_trace_ids(text, "seqserve_request_duration_seconds")


def test_a_call_without_traceparent_starts_a_trace_of_its_own(traced_server, receiver) -> None:
    """The default sampler (parentbased_always_on) samples root calls; the health checks are not traced."""
    before = {s.span_id for s in receiver.spans()}
    reply = call(f"{traced_server.rest_url}/v2/health/ready")
    assert reply.status == 200
    probabilities = v2_infer(traced_server, ["a root call"])
    assert probabilities.shape == (1, 2)

    def root_arrived(spans: list[ReceivedSpan]) -> bool:
        return any(
            s.kind == SPAN_KIND_SERVER and not s.parent_span_id and s.span_id not in before for s in spans
        )

    new = [s for s in receiver.wait_for(root_arrived, SPANS_TIMEOUT_S) if s.span_id not in before]
    roots = [s for s in new if s.kind == SPAN_KIND_SERVER and not s.parent_span_id]
    assert [s.name for s in roots] == ["inference.GRPCInferenceService/ModelInfer"]


def exemplar_trace_ids(text: str, family_name: str) -> set[str]:
    return {
        s.exemplar.labels["trace_id"]
        for f in text_string_to_metric_families(text)
        if f.name == family_name
        for s in f.samples
        if s.exemplar is not None
    }


def scrape(url: str, accept: str | None = None) -> tuple[str, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers["Content-Type"], response.read().decode()


def test_latency_histograms_carry_the_trace_id_as_exemplar(traced_server, receiver) -> None:
    caller = Caller(5)
    v2_infer(traced_server, TEXTS, traceparent=caller.traceparent)
    content_type, text = scrape(traced_server.metrics_url, OPENMETRICS)
    assert content_type.startswith("application/openmetrics-text")
    assert caller.trace_id in exemplar_trace_ids(text, "seqserve_request_duration_seconds")
    _, batch, _ = wait_for_trace(receiver, caller)
    batch_trace = batch.trace_id
    for stage in ("seqserve_tokenize_duration_seconds", "seqserve_inference_duration_seconds"):
        assert batch_trace in exemplar_trace_ids(text, stage)
    content_type, plain = scrape(traced_server.metrics_url)
    assert content_type.startswith("text/plain") and " # {" not in plain


def test_workers_each_export_and_the_merged_metrics_keep_exemplars(
    tiny_model_repository: Path, tmp_path: Path
) -> None:
    with TraceReceiver() as own_receiver, ServerProcess(
        tiny_model_repository, tmp_path, "--workers", "2", env=exporting_to(own_receiver.endpoint)
    ) as server:  # fmt: skip
        callers = [Caller(100 + i) for i in range(24)]
        for caller in callers:  # a new connection per call: the kernel spreads them over the workers
            v2_infer(server, TEXTS, traceparent=caller.traceparent)
        for caller in callers[:2]:
            assert_request_trace(*wait_for_trace(own_receiver, caller), 3)
        spans = own_receiver.wait_for(
            lambda spans: all(server_span_of(c, spans) for c in callers), SPANS_TIMEOUT_S
        )
        instances = {server_span_of(c, spans).resource["service.instance.id"] for c in callers}  # type: ignore[union-attr]
        assert len(instances) == 2, instances
        assert {i.rsplit("-", 1)[1] for i in instances} == {str(p) for p in server.ready["workers"]}
        content_type, text = scrape(server.metrics_url, OPENMETRICS)
        assert content_type.startswith("application/openmetrics-text") and text.endswith("# EOF\n")
        exemplars = exemplar_trace_ids(text, "seqserve_request_duration_seconds")
        assert exemplars and exemplars <= {c.trace_id for c in callers}
        requests = sum(
            s.value
            for f in text_string_to_metric_families(text)
            if f.name == "seqserve_request_duration_seconds"
            for s in f.samples
            if s.name.endswith("_count")
        )
        assert requests == len(callers)


def test_classify_trace_prints_the_trace_id_the_server_continued(traced_server, receiver) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "seqserve.cli", "classify", "--address", traced_server.address,
         "--model", MODEL, "--trace", "nation's dogs vow to keep their humans safe"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    trace_id = result.stdout.strip().splitlines()[-1].removeprefix("trace id ")
    assert len(trace_id) == 32 and int(trace_id, 16)
    spans = receiver.wait_for(
        lambda spans: any(s.trace_id == trace_id and s.kind == SPAN_KIND_SERVER for s in spans),
        SPANS_TIMEOUT_S,
    )
    (server_span,) = [s for s in spans if s.trace_id == trace_id and s.kind == SPAN_KIND_SERVER]
    assert server_span.name == "seqserve.v1.Classifier/Classify" and server_span.parent_span_id


def test_loadtest_prints_the_slowest_calls_with_the_servers_stages(
    tiny_model_repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The server exports to the receiver the load test runs; every call is sampled."""
    port = free_port()
    with ServerProcess(
        tiny_model_repository, tmp_path, env=exporting_to(f"http://127.0.0.1:{port}")
    ) as server:
        argv = [
            "--address", server.address, "--metrics-url", "", "--model", MODEL, "--protocol", "v2",
            "--texts", str(tmp_path / "texts.txt"), "--duration", "1", "--warmup", "0", "--concurrency", "2",
            "--max-requests", "40", "--trace-receiver", f"127.0.0.1:{port}", "--slowest", "3", "--json",
        ]  # fmt: skip
        (tmp_path / "texts.txt").write_text("\n".join(SARCASM_TEXTS) + "\n")
        assert loadtest_main(argv) == 0
    (result,) = json.loads(capsys.readouterr().out)["results"]
    slowest = result["slowest_calls"]
    assert len(slowest) == 3
    assert [row["client_ms"] for row in slowest] == sorted(
        (row["client_ms"] for row in slowest), reverse=True
    )
    for row in slowest:
        assert set(row["stages_ms"]) == {"server", "admission", "queue_wait", "batch", "tokenize", "runtime"}
        assert row["stages_ms"]["server"] <= row["client_ms"]
        assert row["batch_size"] >= 1 and row["server_instance"].endswith(str(server.ready["pid"]))


def test_prometheus_stores_the_exemplars_the_dashboard_links_to_traces(
    traced_server, receiver, tmp_path
) -> None:
    """A real Prometheus (exemplar storage on) scraping the traced server answers the dashboard's
    exemplar queries with the trace ids of sampled requests, under the label name the Grafana
    datasource's exemplar link reads."""
    link = yaml.safe_load(GRAFANA_DATASOURCES.read_text())["datasources"][0]["jsonData"]
    (destination,) = link["exemplarTraceIdDestinations"]
    exemplar_queries = [
        target["expr"]
        for panel in json.loads(DASHBOARD.read_text())["panels"]
        for target in panel.get("targets", [])
        if target.get("exemplar")
    ]
    assert len(exemplar_queries) >= 4
    with scraping(traced_server.metrics_url, tmp_path, features=["exemplar-storage"]) as prometheus:
        callers = [Caller(200 + i) for i in range(3)]
        started = time.time()
        found: set[str] = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not found:
            for caller in callers:
                v2_infer(traced_server, TEXTS, traceparent=caller.traceparent)
            time.sleep(1.5)  # a scrape or two
            answer = prometheus.get(
                "/api/v1/query_exemplars",
                query=exemplar_queries[0],
                start=str(started - 60),
                end=str(time.time()),
            )
            assert answer["status"] == "success", answer
            found = {
                exemplar["labels"][destination["name"]]
                for series in answer["data"]
                for exemplar in series["exemplars"]
            }
        assert found & {c.trace_id for c in callers}, found
        for query in exemplar_queries:
            assert (
                prometheus.get("/api/v1/query_exemplars", query=query, start=str(started - 60))["status"]
                == "success"
            )


def test_a_stream_is_one_span_with_a_queue_wait_and_a_batch_link_per_request(traced_server, receiver) -> None:
    """ModelStreamInfer: one SERVER span for the stream; admission once, each request its queue wait
    (events on it), and each request's batch linked to the stream's span."""
    import queue

    caller = Caller(300)
    answers: queue.Queue = queue.Queue()
    client = triton.InferenceServerClient(traced_server.address)
    client.start_stream(
        callback=lambda result, error: answers.put((result, error)),
        headers={"traceparent": caller.traceparent},
    )
    try:
        for index in range(3):
            text_input = triton.InferInput("text", [1], "BYTES")
            text_input.set_data_from_numpy(np.array([TEXTS[index].encode()], dtype=np.object_))
            client.async_stream_infer(MODEL, [text_input], request_id=str(index))
            _, error = answers.get(timeout=10)  # one at a time: three batches
            assert error is None
    finally:
        client.stop_stream()
        client.close()

    def three_batches(spans: list[ReceivedSpan]) -> bool:
        server = server_span_of(caller, spans)
        return (
            server is not None
            and sum(
                1
                for s in spans
                if s.name == names.BATCH_SPAN and any(link.span_id == server.span_id for link in s.links)
            )
            == 3
        )

    spans = receiver.wait_for(three_batches, SPANS_TIMEOUT_S)
    assert three_batches(spans)
    server = server_span_of(caller, spans)
    assert server is not None and server.name == "inference.GRPCInferenceService/ModelStreamInfer"
    recorded = [stage.name for stage in stages(server)]
    assert recorded == [names.ADMISSION, names.QUEUE_WAIT, names.QUEUE_WAIT, names.QUEUE_WAIT]
    children = [s.name for s in spans if s.parent_span_id == server.span_id and s.trace_id == server.trace_id]
    assert children == [names.BATCH_SPAN] * 3  # each batch's only sampled request: a child
