"""A lean V2 ModelInfer server: the reference design `make bench-peers --lean` measures beside seqserve.

It does what seqserve's request path must do and nothing else: grpc.aio, each model's latest version
loaded as the server loads it (its tokenizer's TokenEncoder, its padding, the ONNX Runtime session with
the server's settings: bench.in_process), and batching. The requests of a model that arrive while its
batch runs form its next batch; the batch is tokenized on the event loop, and only the runtime call goes
to one dedicated thread, whose result comes back in one wake-up. Replies have seqserve's shape (both
outputs, raw). It has no limits, deadlines, queue bound, drain, tracing or other protocols, and one
metric, `seqserve_requests_total` by model and code, so that the bench reads its gRPC statuses as it
reads seqserve's. What seqserve costs beyond it is what those guarantees and that generality cost.

    .venv/bin/python -m bench.lean_server --models models --port 8610
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import threading
from collections.abc import Sequence
from pathlib import Path

import grpc
import numpy as np
from prometheus_client import CollectorRegistry, Counter, start_http_server
from tritonclient.grpc import service_pb2, service_pb2_grpc

from bench.harness import free_port
from bench.in_process import InProcessModel, load_in_process
from bench.models import find_models
from seqserve.metric_names import REQUESTS
from serving.announce import READY_PREFIX
from serving.protocol.v2_types import decode_bytes_elements, encode_bytes_elements

Pending = list[tuple[list[str], asyncio.Future[np.ndarray]]]


class LeanModel:
    """One model's batching: what arrives while its batch runs is its next batch."""

    def __init__(self, model: InProcessModel, runtime_calls: queue.SimpleQueue) -> None:
        self.model = model
        self.labels = [label.encode() for label in model.config.labels]
        self._calls = runtime_calls
        self._pending: Pending = []
        self._running = False

    def submit(self, texts: list[str]) -> asyncio.Future[np.ndarray]:
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        if not self._pending and not self._running:
            loop.call_soon(self._dispatch)  # requests arriving in this loop iteration join it
        self._pending.append((texts, answer))
        return answer

    def _dispatch(self) -> None:
        if self._running or not self._pending:
            return
        batch, self._pending = self._pending, []
        self._running = True
        ids = self.model.encode([text for texts, _ in batch for text in texts])
        self._calls.put((self, ids, batch, asyncio.get_running_loop()))

    def done(self, batch: Pending, probabilities: np.ndarray) -> None:
        start = 0
        for texts, answer in batch:
            answer.set_result(probabilities[start : start + len(texts)])
            start += len(texts)
        self._running = False
        self._dispatch()


def run_runtime_calls(calls: queue.SimpleQueue) -> None:
    """The dedicated thread: each batch's runtime call (it releases the GIL), its result in one wake-up."""
    while True:
        model, ids, batch, loop = calls.get()
        loop.call_soon_threadsafe(model.done, batch, model.model.runtime.run(ids))


class LeanServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, models: dict[str, LeanModel], requests: Counter) -> None:
        self._models = models
        self._requests = requests

    async def ModelInfer(
        self, request: service_pb2.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ModelInferResponse:
        model = self._models[request.model_name]
        count = request.inputs[0].shape[0]
        texts = [text.decode() for text in decode_bytes_elements(request.raw_input_contents[0], count)]
        probabilities = await model.submit(texts)
        best = [model.labels[i] for i in probabilities.argmax(axis=1).tolist()]
        response = service_pb2.ModelInferResponse(model_name=request.model_name, model_version="1")
        response.outputs.add(name="probabilities", datatype="FP32", shape=probabilities.shape)
        response.outputs.add(name="label", datatype="BYTES", shape=(len(best),))
        response.raw_output_contents.extend((probabilities.tobytes(), encode_bytes_elements(best)))
        self._requests.labels(request.model_name, "OK").inc()
        return response


async def serve(models: Path, port: int) -> None:
    calls: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=run_runtime_calls, args=(calls,), name="runtime", daemon=True).start()
    lean = {
        found.name: LeanModel(load_in_process(found.version_dir, found.config, models), calls)
        for found in find_models(models)
    }
    registry = CollectorRegistry()
    requests = Counter(REQUESTS, "Requests by model and gRPC code", ("model", "code"), registry=registry)
    metrics_port = free_port()
    start_http_server(metrics_port, "127.0.0.1", registry)
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(LeanServicer(lean, requests), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    ready = {
        "grpc_address": f"127.0.0.1:{bound}",
        "metrics_url": f"http://127.0.0.1:{metrics_port}/metrics",
        "pid": os.getpid(),
        "models": sorted(lean),
    }
    print(READY_PREFIX + json.dumps(ready), flush=True)
    await server.wait_for_termination()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.models, args.port))


if __name__ == "__main__":
    main()
