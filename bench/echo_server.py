"""A no-op seqserve.v1.Classifier, KServe V2 ModelInfer and TF Serving Predict: the transport's floor for
the benchmarks.

Same grpc.aio server, same message limits, same loopback address and ready line as `seqserve serve`,
and replies of the same size and shape (one two-label prediction per text; V2: FP32 `probabilities`
[N, 2] in raw contents, on the same tritonclient stubs as the server's V2 handler; Predict: the
`probabilities` and `label` tensors of seqserve's signature, on the same TF Serving stubs), but no validation,
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
from functools import cache

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

from seqserve.tfs.tensorflow.core.framework import types_pb2
from seqserve.tfs.tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
from seqserve.v1 import classifier_pb2, classifier_pb2_grpc
from serving.announce import READY_PREFIX
from serving.settings import Settings

LABELS = ("not_sarcastic", "sarcastic")
ECHO_MODEL = "echo"


# Each reply is built once per text count, then reused.
@cache
def classify_reply(texts: int) -> classifier_pb2.ClassifyResponse:
    scores = [classifier_pb2.LabelScore(label=label, score=0.5) for label in LABELS]
    prediction = classifier_pb2.Prediction(label=LABELS[0], score=0.5, scores=scores)
    return classifier_pb2.ClassifyResponse(model=ECHO_MODEL, version=1, predictions=[prediction] * texts)


@cache
def infer_reply(texts: int) -> service_pb2.ModelInferResponse:
    reply = service_pb2.ModelInferResponse(model_name=ECHO_MODEL, model_version="1")
    reply.outputs.add(name="probabilities", datatype="FP32", shape=[texts, len(LABELS)])
    reply.raw_output_contents.append(np.full((texts, len(LABELS)), 0.5, "<f4").tobytes())
    return reply


@cache
def predict_reply(texts: int) -> predict_pb2.PredictResponse:
    reply = predict_pb2.PredictResponse()
    reply.model_spec.name = ECHO_MODEL
    probabilities = reply.outputs["probabilities"]
    probabilities.dtype = types_pb2.DT_FLOAT
    probabilities.float_val.extend([0.5] * (texts * len(LABELS)))
    probabilities.tensor_shape.dim.add(size=texts)
    probabilities.tensor_shape.dim.add(size=len(LABELS))
    label = reply.outputs["label"]
    label.dtype = types_pb2.DT_STRING
    label.string_val.extend([LABELS[0].encode()] * texts)
    label.tensor_shape.dim.add(size=texts)
    return reply


class EchoClassifier(classifier_pb2_grpc.ClassifierServicer):
    async def Classify(
        self, request: classifier_pb2.ClassifyRequest, context: grpc.aio.ServicerContext
    ) -> classifier_pb2.ClassifyResponse:
        return classify_reply(len(request.texts))

    async def ListModels(
        self, request: classifier_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> classifier_pb2.ListModelsResponse:
        return classifier_pb2.ListModelsResponse(models=[classifier_pb2.ModelInfo(name=ECHO_MODEL)])


class EchoInference(service_pb2_grpc.GRPCInferenceServiceServicer):
    """ModelReady and ModelInfer of KServe V2, for any model name."""

    async def ModelReady(
        self, request: service_pb2.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ModelReadyResponse:
        return service_pb2.ModelReadyResponse(ready=True)

    async def ModelInfer(
        self, request: service_pb2.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ModelInferResponse:
        return infer_reply(
            int(request.inputs[0].shape[0]) if request.inputs and request.inputs[0].shape else 0
        )


class EchoPrediction(prediction_service_pb2_grpc.PredictionServiceServicer):
    """TF Serving's Predict for any model name: one text per element of the `text` input."""

    async def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext
    ) -> predict_pb2.PredictResponse:
        text = request.inputs.get("text")
        return predict_reply(
            text.tensor_shape.dim[0].size if text is not None and text.tensor_shape.dim else 0
        )


async def serve(host: str, port: int) -> None:
    limit = Settings().max_message_bytes
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]
    )
    classifier_pb2_grpc.add_ClassifierServicer_to_server(EchoClassifier(), server)
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(EchoInference(), server)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(EchoPrediction(), server)
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
