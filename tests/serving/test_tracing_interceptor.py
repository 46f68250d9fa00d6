"""serving.handlers.tracing's gRPC interceptor in process: a call the sampler leaves out gets the
method's handler back as it came (nothing wrapped, no span); a sampled call gets a handler wrapped for
it alone, and the interceptor keeps nothing of the handlers it was given."""

from __future__ import annotations

import asyncio
import gc
import os
import weakref
from collections.abc import Iterator
from typing import Any, NamedTuple

import grpc
import pytest

from seqserve.loadtest.trace_receiver import TraceReceiver
from serving import tracing
from serving.handlers.tracing import GrpcTracingInterceptor, ServerAddress

METHOD = "/inference.GRPCInferenceService/ModelInfer"
CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"


class CallDetails(NamedTuple):
    """What grpc.aio hands an interceptor (grpc.HandlerCallDetails)."""

    method: str
    invocation_metadata: tuple[tuple[str, str], ...]


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[TraceReceiver]:
    with TraceReceiver() as instance:
        for name in [k for k in os.environ if k.startswith("OTEL_")]:
            monkeypatch.delenv(name)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", instance.endpoint)
        yield instance


def intercepted(
    interceptor: GrpcTracingInterceptor, handler: Any, metadata: tuple[tuple[str, str], ...]
) -> Any:
    async def continuation(details: Any) -> Any:
        return handler

    return asyncio.run(interceptor.intercept_service(continuation, CallDetails(METHOD, metadata)))


def test_a_call_left_out_gets_its_handler_untouched(receiver, monkeypatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    server_tracing = tracing.configure()
    assert server_tracing is not None
    interceptor = GrpcTracingInterceptor(server_tracing, ServerAddress("127.0.0.1"))
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    for metadata in ((), (("user-agent", "test"),), (("traceparent", f"{CALLER}-00"),)):
        assert intercepted(interceptor, handler, metadata) is handler
    sampled = intercepted(interceptor, handler, (("traceparent", f"{CALLER}-01"),))
    assert sampled is not handler and sampled.unary_unary is not handler.unary_unary
    server_tracing.shutdown()
    assert receiver.spans() == []  # the sampled call's span never ended: nothing was exported


def test_the_interceptor_keeps_nothing_of_the_handlers_it_is_given(receiver) -> None:
    """An inner interceptor may make a handler per call (the restricted API's denial does): every
    sampled call is wrapped on its own, and its handler is freed with it."""
    server_tracing = tracing.configure()  # parentbased_always_on: every root call is sampled
    assert server_tracing is not None
    interceptor = GrpcTracingInterceptor(server_tracing, ServerAddress("127.0.0.1"))
    given = []
    for _ in range(20):

        def behaviour(request: Any, context: Any) -> Any:
            return request

        given.append(weakref.ref(behaviour))
        handler = grpc.unary_unary_rpc_method_handler(behaviour)
        assert intercepted(interceptor, handler, ()) is not handler
        del behaviour, handler
    gc.collect()
    assert [ref() for ref in given] == [None] * 20
    server_tracing.shutdown()
