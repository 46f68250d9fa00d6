"""The peer of `make bench-peers`: KServe's Python ModelServer serving seqserve's ONNX files.

It runs in its own virtualenv (.venv-kserve, bench/kserve_peer_requirements.txt) and imports neither
`serving/` nor tritonclient: kserve and tritonclient both register `inference.*` in protobuf's default
pool and cannot be imported into one process. It is set up the way KServe's documentation sets up a
custom Python model, with the choices that made it fastest on this machine:

- `predict` is synchronous, so KServe runs it inline on its event loop (tokenize + ONNX Runtime, no
  thread hop). Offloading it to KServe's thread pool was slower here.
- the tokenizer is the repository's tokenizer.json with its own truncation and padding
  (`encode_batch`), as a user of that file would call it; ONNX Runtime with one intra-op and one
  inter-op thread, sequential, all graph optimisations, as seqserve's sessions.
- per-request logging off (`--enable_latency_logging false`, WARNING level): stock KServe logs two
  INFO lines per gRPC request.
- outputs in `raw_output_contents` (tritonclient's `as_numpy` reads numeric outputs only from there):
  `probabilities` FP32 [N, labels], a sigmoid's p expanded to [1 - p, p] as seqserve does.

The models come from a JSON manifest that bench/peers.py writes from the repository's configs:
`[{"name", "onnx", "tokenizer", "labels", "sigmoid"}]`.

    .venv-kserve/bin/python bench/kserve_peer.py --manifest peers.json --grpc_port 18081 --http_port 18080
"""

from __future__ import annotations

import argparse
import json
import logging
import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # as `seqserve serve` runs the tokenizer

import numpy as np
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server
from kserve.errors import InvalidInput
from tokenizers import Tokenizer

TEXT_INPUT = "text"
PROBABILITIES_OUTPUT = "probabilities"


def session_options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


class TextClassifier(Model):
    def __init__(self, name: str, onnx_path: str, tokenizer_path: str, sigmoid: bool) -> None:
        super().__init__(name)
        self._session = ort.InferenceSession(onnx_path, session_options(), providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name
        self._tokenizer = Tokenizer.from_file(tokenizer_path)
        self._sigmoid = sigmoid

    def load(self) -> bool:
        self._run(["warm up"])
        self.ready = True
        return self.ready

    def _run(self, texts: list[str]) -> np.ndarray:
        ids = np.array([e.ids for e in self._tokenizer.encode_batch(texts)], dtype=np.int32)
        (raw,) = self._session.run([self._output], {self._input: ids})
        raw = np.asarray(raw, dtype=np.float32)
        if self._sigmoid:
            p = raw.reshape(-1, 1)
            return np.concatenate([1.0 - p, p], axis=1)
        return raw

    def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        inputs = [tensor for tensor in payload.inputs if tensor.name == TEXT_INPUT]
        if len(inputs) != 1 or inputs[0].datatype != "BYTES":
            raise InvalidInput(f"expected one BYTES input {TEXT_INPUT!r} of shape [N]")
        texts = [element.decode("utf-8") for element in inputs[0].as_numpy().reshape(-1)]
        probabilities = self._run(texts)
        output = InferOutput(name=PROBABILITIES_OUTPUT, shape=list(probabilities.shape), datatype="FP32")
        output.set_data_from_numpy(probabilities, binary_data=True)
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=[output],
            use_binary_outputs=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser], description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", required=True, help="JSON list of the models to serve")
    args, _ = parser.parse_known_args()
    with open(args.manifest, encoding="utf-8") as manifest:
        entries = json.load(manifest)
    models = [TextClassifier(e["name"], e["onnx"], e["tokenizer"], e["sigmoid"]) for e in entries]
    for model in models:
        model.load()
    server = ModelServer(grpc_port=args.grpc_port, http_port=args.http_port, enable_latency_logging=False)
    for name in ("kserve", "kserve.trace", "uvicorn.access"):  # ModelServer() configures logging first
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start(models)


if __name__ == "__main__":
    main()
