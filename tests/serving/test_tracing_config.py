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
from seqserve.tracing import TracingConfigError, exporter_names, otlp_protocol
from serving import tracing
from serving.batcher import BatchTiming
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


def _one_traced_request(server_tracing: tracing.ServerTracing) -> None:
    from opentelemetry import context, trace

    span = server_tracing.server_span("svc/Method", {"traceparent": CALLER}, {"rpc.system": "grpc"})
    token = context.attach(trace.set_span_in_context(span))
    try:
        request = server_tracing.request(LABELS, 3)
    finally:
        context.detach(token)
    batch = server_tracing.for_model(LABELS)
    started = time.perf_counter()
    timing = BatchTiming(started, started + 0.001, started + 0.0012, started + 0.002, 3)
    ids = np.zeros((3, 40), dtype=np.int32)
    assert batch.batch_ran([(request, started - 0.003)], ids, timing) is not None
    span.end()


def test_spans_reach_an_otlp_receiver_with_this_process_as_instance(receiver, monkeypatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=pod-7,deployment.environment=test")
    server_tracing = tracing.configure()
    assert server_tracing is not None
    _one_traced_request(server_tracing)
    server_tracing.shutdown()  # flushes the batch processor
    spans = {span.name: span for span in receiver.spans()}
    assert set(spans) == {
        "svc/Method", names.ADMISSION_SPAN, names.QUEUE_WAIT_SPAN, names.BATCH_SPAN,
        names.TOKENIZE_SPAN, names.RUNTIME_SPAN,
    }  # fmt: skip
    server = spans["svc/Method"]
    assert (server.trace_id, server.parent_span_id) == (
        "0af7651916cd43dd8448eb211c80319c",
        "b7ad6b7169203331",
    )
    assert server.resource["service.name"] == "seqserve"
    assert server.resource["service.instance.id"] == f"pod-7-{os.getpid()}"
    assert server.resource["deployment.environment"] == "test"
    assert server.attributes[tracing.TEXT_COUNT] == 3
    for stage in (names.ADMISSION_SPAN, names.QUEUE_WAIT_SPAN):
        assert spans[stage].parent_span_id == server.span_id
    batch = spans[names.BATCH_SPAN]
    assert [link.span_id for link in batch.links] == [server.span_id]
    assert batch.attributes[names.BATCH_SIZE] == 3 and batch.attributes[names.PADDED_LENGTH] == 40
    assert spans[names.QUEUE_WAIT_SPAN].duration_s == pytest.approx(0.003, abs=0.002)
    for stage in (names.TOKENIZE_SPAN, names.RUNTIME_SPAN):
        assert spans[stage].parent_span_id == batch.span_id
        assert spans[stage].duration_s == pytest.approx(0.001, abs=0.0005)


def test_a_sampler_from_the_environment_and_a_service_name(receiver, monkeypatch) -> None:
    """parentbased_traceidratio at 0: a call without a sampled parent records nothing; one with a
    sampled parent still does (the caller decides)."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "classifier-eu")
    server_tracing = tracing.configure()
    assert server_tracing is not None
    root = server_tracing.server_span("svc/Unsampled", {}, {})
    assert not root.get_span_context().trace_flags.sampled
    root.end()
    _one_traced_request(server_tracing)
    server_tracing.shutdown()
    names = {span.name for span in receiver.spans()}
    assert "svc/Unsampled" not in names and "svc/Method" in names
    assert {span.resource["service.name"] for span in receiver.spans()} == {"classifier-eu"}


def test_the_server_refuses_to_start_with_an_exporter_it_cannot_use(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_TRACES_EXPORTER"] = "jaeger"
    result = subprocess.run(
        [sys.executable, "-m", "seqserve.cli", "serve", "--model-repository", str(tmp_path), "--port", "0"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "OTEL_TRACES_EXPORTER='jaeger': jaeger unknown; use otlp, console or none" in result.stderr


def test_a_traced_batch_records_its_stages_from_the_batchers_own_times(receiver) -> None:
    """The batch span and its tokenize and runtime stages are made on the loop once the batch is back,
    from the times the batcher took, not inside the runtime call on its thread."""
    import asyncio
    import threading

    import numpy as np
    from opentelemetry import context, trace

    from serving.batcher import Batcher, BatchPolicy
    from serving.inference_pool import InferencePool

    server_tracing = tracing.configure()
    assert server_tracing is not None
    batch_tracing = server_tracing.for_model(LABELS)
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
            span = server_tracing.server_span("svc/Method", {"traceparent": CALLER}, {})
            token = context.attach(trace.set_span_in_context(span))
            try:
                result = await batcher.submit(["a"], None, server_tracing.request(LABELS, 1))
                assert result.rows.shape == (1, 8)
            finally:
                context.detach(token)
                span.end()
        await batcher.close()
        pool.close()

    asyncio.run(requests())
    server_tracing.shutdown()
    assert threading.get_ident() not in execute_threads
    spans = receiver.spans()
    batches = [s for s in spans if s.name == names.BATCH_SPAN]
    batch_ids = {s.span_id for s in batches}
    for stage in (names.TOKENIZE_SPAN, names.RUNTIME_SPAN):
        assert sum(s.name == stage and s.parent_span_id in batch_ids for s in spans) == 30
    assert len(batches) == 30 and all(s.attributes[names.PADDED_LENGTH] == 8 for s in batches)
