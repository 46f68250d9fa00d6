"""serving.tracing as the OTEL_* variables configure it: off by default, exporting over OTLP/gRPC to a
real receiver when asked, with the resource every worker needs."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from seqserve import tracing as names
from seqserve.loadtest.trace_receiver import TraceReceiver
from seqserve.loadtest.trace_report import stages
from seqserve.tracing import TracingConfigError, exporter_names, otlp_protocol
from serving import tracing
from serving.batch_timing import BatchTiming
from serving.metrics import ModelLabels
from tests.serving.server_process import REPO_ROOT

LABELS = ModelLabels("sarcasm-gru", "1", "onnx")
CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_off_by_default_imports_nothing_of_opentelemetry() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    probe = (
        "import sys, serving.tracing as t; "
        "print(t.configure(), any(m.startswith('opentelemetry') for m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["None", "False"]


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, ["otlp", "console"]),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, []),
    ],
)
def test_exporters_asked_for(environ: dict[str, str], names: list[str]) -> None:
    assert exporter_names(environ) == names


def test_unusable_settings_are_refused_with_the_variable_named() -> None:
    with pytest.raises(TracingConfigError, match=r"OTEL_TRACES_EXPORTER.*zipkin"):
        exporter_names({"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(TracingConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        otlp_protocol({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    assert otlp_protocol({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}) == "http/protobuf"
    assert otlp_protocol({}) == "grpc"


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch):
    with TraceReceiver() as instance:
        for name in [k for k in os.environ if k.startswith("OTEL_")]:
            monkeypatch.delenv(name)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", instance.endpoint)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
        yield instance


def _one_traced_request(server_tracing: tracing.ServerTracing, traceparent: str | None = CALLER) -> None:
    """A call as the handlers make it (decided, started, entered, finished), one request of it through
    the request path and its batch; the call must be sampled."""
    sampled = server_tracing.decide(traceparent)
    assert sampled is not None
    call = server_tracing.start(sampled, "svc/Method", {"rpc.system": "grpc"})
    entered = server_tracing.enter(call)
    request = server_tracing.request(LABELS, 3)
    assert request is call
    batch = server_tracing.batches
    started = time.perf_counter()
    timing = BatchTiming(started, started + 0.001, started + 0.0012, started + 0.002, 3)
    ids = np.zeros((3, 40), dtype=np.int32)
    assert batch.batch_ran([(request, started - 0.003)], ids, timing) is not None
    server_tracing.finish(call, entered, False, ("rpc.grpc.status_code", 0))
    assert server_tracing.request(LABELS, 3) is tracing.NO_TRACE  # the call is over


def test_spans_reach_an_otlp_receiver_with_this_process_as_instance(receiver, monkeypatch) -> None:
    """Two spans per call: the SERVER span with its admission and queue wait, the batch's span (its
    child and linked to it) with its tokenize and runtime; each stage an event with its duration."""
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=pod-7,deployment.environment=test")
    server_tracing = tracing.configure()
    assert server_tracing is not None
    _one_traced_request(server_tracing)
    server_tracing.shutdown()  # flushes the batch processor
    spans = {span.name: span for span in receiver.spans()}
    assert set(spans) == {"svc/Method", names.BATCH_SPAN}
    server, batch = spans["svc/Method"], spans[names.BATCH_SPAN]
    assert (server.trace_id, server.parent_span_id) == (
        "0af7651916cd43dd8448eb211c80319c",
        "b7ad6b7169203331",
    )
    assert server.resource["service.name"] == "seqserve"
    assert server.resource["service.instance.id"] == f"pod-7-{os.getpid()}"
    assert server.resource["deployment.environment"] == "test"
    assert server.attributes[tracing.TEXT_COUNT] == 3 and server.attributes["rpc.grpc.status_code"] == 0
    assert [stage.name for stage in stages(server)] == [names.ADMISSION, names.QUEUE_WAIT]
    assert batch.parent_span_id == server.span_id
    assert [link.span_id for link in batch.links] == [server.span_id]
    assert batch.attributes[names.BATCH_SIZE] == 3 and batch.attributes[names.PADDED_LENGTH] == 40
    recorded = {stage.name: stage for stage in stages(server) + stages(batch)}
    assert recorded[names.QUEUE_WAIT].duration_ms == pytest.approx(3, abs=2)
    assert recorded[names.QUEUE_WAIT].end_ns == batch.start_ns == recorded[names.TOKENIZE].start_ns
    for stage in (names.TOKENIZE, names.RUNTIME):
        assert recorded[stage].duration_ms == pytest.approx(1, abs=0.5)
    assert recorded[names.RUNTIME].start_ns - recorded[names.TOKENIZE].end_ns == pytest.approx(
        200_000, abs=1000
    )


def test_a_sampler_from_the_environment_and_a_service_name(receiver, monkeypatch) -> None:
    """parentbased_traceidratio at 0: a call without a sampled parent is not traced (the check says
    None before any span exists); one with a sampled parent still is (the caller decides)."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "classifier-eu")
    server_tracing = tracing.configure()
    assert server_tracing is not None
    assert server_tracing.decide(None) is None
    assert server_tracing.decide(CALLER.removesuffix("01") + "00") is None
    _one_traced_request(server_tracing)
    server_tracing.shutdown()
    assert {span.name for span in receiver.spans()} == {"svc/Method", names.BATCH_SPAN}
    assert {span.resource["service.name"] for span in receiver.spans()} == {"classifier-eu"}


def test_a_root_call_is_exported_with_the_trace_id_it_was_sampled_on(receiver, monkeypatch) -> None:
    """traceidratio at 0.5: the roots the check samples are the SDK's spans with the trace id drawn
    for the decision, sampled, with the W3C random-trace-id flag, as the SDK would make them."""
    from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased

    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.5")
    server_tracing = tracing.configure()
    assert server_tracing is not None
    decided = [server_tracing.decide(None) for _ in range(200)]
    roots = [sampled for sampled in decided if sampled is not None]
    assert 60 < len(roots) < 140  # about half; the chance of falling outside is below 1e-8
    sdk = TraceIdRatioBased(0.5)
    assert all(sdk.should_sample(None, s.trace_id, "x").decision is Decision.RECORD_AND_SAMPLE for s in roots)
    calls = [server_tracing.start(sampled, "svc/Root", {}) for sampled in roots[:5]]
    for sampled, call in zip(roots[:5], calls, strict=True):
        assert call.span is not None
        context = call.span.get_span_context()
        assert context.trace_id == sampled.trace_id and int(context.trace_flags) == 0x03
        assert call.exemplar == {"trace_id": f"{sampled.trace_id:032x}", "span_id": f"{context.span_id:016x}"}
        call.span.end()
    server_tracing.shutdown()
    exported = {span.trace_id for span in receiver.spans() if not span.parent_span_id}
    assert exported == {f"{sampled.trace_id:032x}" for sampled in roots[:5]}


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"OTEL_TRACES_EXPORTER": "jaeger"},
            "OTEL_TRACES_EXPORTER='jaeger': jaeger unknown; use otlp, console or none",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_TRACES_SAMPLER": "traceidratio",
             "OTEL_TRACES_SAMPLER_ARG": "1%"},
            "OTEL_TRACES_SAMPLER_ARG='1%': traceidratio takes a ratio from 0 to 1 (e.g. 0.01 for 1 %)",
        ),
    ],
)  # fmt: skip
def test_the_server_refuses_to_start_with_tracing_it_cannot_do(
    variables: dict[str, str], message: str, tmp_path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | variables
    result = subprocess.run(
        [sys.executable, "-m", "seqserve.cli", "serve", "--model-repository", str(tmp_path), "--port", "0"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr


def test_a_traced_batch_records_its_stages_from_the_batchers_own_times(receiver) -> None:
    """The batch span and its tokenize and runtime events are made on the loop once the batch is back,
    from the times the batcher took, not inside the runtime call on its thread."""
    import asyncio
    import threading

    from serving.batcher import Batcher, BatchPolicy
    from serving.inference_pool import InferencePool

    server_tracing = tracing.configure()
    assert server_tracing is not None
    batch_tracing = server_tracing.batches
    execute_threads: list[int] = []

    class Work:
        def prepare(self, items: list[str]) -> np.ndarray:
            return np.zeros((len(items), 8), dtype=np.int32)

        def execute(self, ids: np.ndarray) -> np.ndarray:
            execute_threads.append(threading.get_ident())
            return ids

        def finish(self, ids: np.ndarray, output: np.ndarray, timing: object, exemplar: object) -> np.ndarray:
            assert exemplar is not None  # the batch holds a sampled request
            return output

    async def requests() -> None:
        pool = InferencePool(1)
        batcher = Batcher(Work(), BatchPolicy(4, 0.0, 10), pool, tracing=batch_tracing)
        for _ in range(30):
            sampled = server_tracing.decide(CALLER)
            assert sampled is not None
            call = server_tracing.start(sampled, "svc/Method", {})
            entered = server_tracing.enter(call)
            try:
                result = await batcher.submit(["a"], None, server_tracing.request(LABELS, 1))
                assert result.rows.shape == (1, 8)
            finally:
                server_tracing.finish(call, entered, False, ("rpc.grpc.status_code", 0))
        await batcher.close()
        pool.close()

    asyncio.run(requests())
    server_tracing.shutdown()
    assert threading.get_ident() not in execute_threads
    spans = receiver.spans()
    batches = [s for s in spans if s.name == names.BATCH_SPAN]
    assert len(batches) == 30 and all(s.attributes[names.PADDED_LENGTH] == 8 for s in batches)
    assert all([stage.name for stage in stages(s)] == [names.TOKENIZE, names.RUNTIME] for s in batches)
