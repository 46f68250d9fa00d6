"""A no-op seqserve.v1.Classifier and KServe V2 ModelInfer: the transport's floor for the benchmarks.

Same grpc.aio server, same message limits, same loopback address and ready line as `seqserve serve`,
and replies of the same size and shape (one two-label prediction per text; V2: FP32 `probabilities`
[N, 2] in raw contents, on the same tritonclient stubs as the server's V2 handler), but no validation,
queueing, tokenization or inference: each reply is built once per text count and then reused. What the
load generator measures against it is what the gRPC stack plus the load generator alone can do.

    .venv/bin/python -m bench.echo_server --port 8600
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from collections.abc import Sequence

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

from seqserve.v1 import classifier_pb2, classifier_pb2_grpc
from serving.announce import READY_PREFIX
from serving.settings import Settings

LABELS = ("not_sarcastic", "sarcastic")
ECHO_MODEL = "echo"


def _reply(texts: int) -> classifier_pb2.ClassifyResponse:
    scores = [classifier_pb2.LabelScore(label=label, score=0.5) for label in LABELS]
    prediction = classifier_pb2.Prediction(label=LABELS[0], score=0.5, scores=scores)
    return classifier_pb2.ClassifyResponse(model=ECHO_MODEL, version=1, predictions=[prediction] * texts)


class EchoClassifier(classifier_pb2_grpc.ClassifierServicer):
    def __init__(self) -> None:
        self._replies: dict[int, classifier_pb2.ClassifyResponse] = {}

    async def Classify(
        self, request: classifier_pb2.ClassifyRequest, context: grpc.aio.ServicerContext
    ) -> classifier_pb2.ClassifyResponse:
        count = len(request.texts)
        if count not in self._replies:
            self._replies[count] = _reply(count)
        return self._replies[count]

    async def ListModels(
        self, request: classifier_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> classifier_pb2.ListModelsResponse:
        return classifier_pb2.ListModelsResponse(models=[classifier_pb2.ModelInfo(name=ECHO_MODEL)])


class EchoInference(service_pb2_grpc.GRPCInferenceServiceServicer):
    """ModelReady and ModelInfer of KServe V2, for any model name."""

    def __init__(self) -> None:
        self._replies: dict[int, service_pb2.ModelInferResponse] = {}

    async def ModelReady(
        self, request: service_pb2.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ModelReadyResponse:
        return service_pb2.ModelReadyResponse(ready=True)

    async def ModelInfer(
        self, request: service_pb2.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ModelInferResponse:
        count = int(request.inputs[0].shape[0]) if request.inputs and request.inputs[0].shape else 0
        if count not in self._replies:
            reply = service_pb2.ModelInferResponse(model_name=ECHO_MODEL, model_version="1")
            reply.outputs.add(name="probabilities", datatype="FP32", shape=[count, len(LABELS)])
            reply.raw_output_contents.append(np.full((count, len(LABELS)), 0.5, "<f4").tobytes())
            self._replies[count] = reply
        return self._replies[count]


async def serve(host: str, port: int) -> None:
    limit = Settings().max_message_bytes
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]
    )
    classifier_pb2_grpc.add_ClassifierServicer_to_server(EchoClassifier(), server)
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(EchoInference(), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    print(
        READY_PREFIX
        + json.dumps({"grpc_address": f"{host}:{bound}", "models": {ECHO_MODEL: [1]}, "pid": os.getpid()}),
        flush=True,
    )
    await stop.wait()
    await server.stop(1)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port (printed in the ready line)")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
