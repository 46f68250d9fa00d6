"""The peer of `make bench-peers`: KServe's Python ModelServer serving seqserve's ONNX files.

It runs in its own virtualenv (.venv-kserve, bench/kserve_peer_requirements.txt) and imports neither
`serving/` nor tritonclient: kserve and tritonclient both register `inference.*` in protobuf's default
pool and cannot be imported into one process (kserve itself is imported only to serve, so that the
padding rule, `trimmed`, can be tested from the project's virtualenv). It is set up the way KServe's
documentation sets up a custom Python model, with the choices that made it fastest on this machine:

- `predict` is synchronous, so KServe runs it inline on its event loop (tokenize + ONNX Runtime, no
  thread hop). Offloading it to KServe's thread pool was slower here.
- the tokenizer is the repository's tokenizer.json with its own truncation and padding
  (`encode_batch`), as a user of that file would call it; ONNX Runtime with one intra-op and one
  inter-op thread, sequential, all graph optimisations, as seqserve's sessions.
- per-request logging off (`--enable_latency_logging false`, WARNING level): stock KServe logs two
  INFO lines per gRPC request.
- `--trim N` pads each batch only to its longest text + N columns (never beyond max_length), as a
  user of a graph with a dynamic sequence axis could write it; N = the model's
  `sequence.trailing_padding` (a Conv1D's kernel) keeps its outputs those of full padding. Without it
  every row is padded to max_length, as the tokenizer.json pads.
- outputs in `raw_output_contents` (tritonclient's `as_numpy` reads numeric outputs only from there):
  `probabilities` FP32 [N, labels], a sigmoid's p expanded to [1 - p, p] as seqserve does.

The models come from a JSON manifest that bench/peers/servers.py writes from the repository's configs:
`[{"name", "onnx", "tokenizer", "sigmoid"}]`.

    .venv-kserve/bin/python bench/kserve_peer.py --manifest peers.json --grpc_port 18081 --http_port 18080 \
        [--trim 5]
"""

from __future__ import annotations

import argparse
import json
import logging
import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # as `seqserve serve` runs the tokenizer

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

TEXT_INPUT = "text"
PROBABILITIES_OUTPUT = "probabilities"
PAD_ID = 0


def trimmed(ids: np.ndarray, trim: int) -> np.ndarray:
    """Right-padded ids [N, max_length] cut to the batch's longest text + `trim` columns (at least one,
    never beyond max_length)."""
    used = np.flatnonzero((ids != PAD_ID).any(axis=0))
    longest = int(used[-1]) + 1 if used.size else 0
    return ids[:, : max(1, min(ids.shape[1], longest + trim))]


def session_options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


class TextClassifier:
    """Tokenize + ONNX Runtime of one model, as the peer runs it (no kserve here, so the padding rule
    can be checked from the project's virtualenv)."""

    def __init__(self, onnx_path: str, tokenizer_path: str, sigmoid: bool, trim: int | None) -> None:
        self._session = ort.InferenceSession(onnx_path, session_options(), providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name
        self._tokenizer = Tokenizer.from_file(tokenizer_path)
        self._sigmoid = sigmoid
        self._trim = trim  # None: every row padded to max_length

    def probabilities(self, texts: list[str]) -> np.ndarray:
        ids = np.array([e.ids for e in self._tokenizer.encode_batch(texts)], dtype=np.int32)
        if self._trim is not None:
            ids = trimmed(ids, self._trim)
        (raw,) = self._session.run([self._output], {self._input: ids})
        raw = np.asarray(raw, dtype=np.float32)
        if self._sigmoid:
            p = raw.reshape(-1, 1)
            return np.concatenate([1.0 - p, p], axis=1)
        return raw


def serve(args: argparse.Namespace, entries: list[dict]) -> None:
    """KServe's ModelServer with one Model per manifest entry; kserve is imported only here, in the
    peer's own virtualenv."""
    from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
    from kserve.errors import InvalidInput

    class KServeTextClassifier(Model):
        def __init__(self, name: str, classifier: TextClassifier) -> None:
            super().__init__(name)
            self._classifier = classifier

        def load(self) -> bool:
            self._classifier.probabilities(["warm up"])
            self.ready = True
            return self.ready

        def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
            inputs = [tensor for tensor in payload.inputs if tensor.name == TEXT_INPUT]
            if len(inputs) != 1 or inputs[0].datatype != "BYTES":
                raise InvalidInput(f"expected one BYTES input {TEXT_INPUT!r} of shape [N]")
            texts = [element.decode("utf-8") for element in inputs[0].as_numpy().reshape(-1)]
            probabilities = self._classifier.probabilities(texts)
            output = InferOutput(name=PROBABILITIES_OUTPUT, shape=list(probabilities.shape), datatype="FP32")
            output.set_data_from_numpy(probabilities, binary_data=True)
            return InferResponse(
                response_id=payload.id or "",
                model_name=self.name,
                infer_outputs=[output],
                use_binary_outputs=True,
            )

    models = [
        KServeTextClassifier(e["name"], TextClassifier(e["onnx"], e["tokenizer"], e["sigmoid"], args.trim))
        for e in entries
    ]
    for model in models:
        model.load()
    server = ModelServer(grpc_port=args.grpc_port, http_port=args.http_port, enable_latency_logging=False)
    for name in ("kserve", "kserve.trace", "uvicorn.access"):  # ModelServer() configures logging first
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start(models)


def main() -> None:
    from kserve import model_server

    parser = argparse.ArgumentParser(parents=[model_server.parser], description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", required=True, help="JSON list of the models to serve")
    parser.add_argument(
        "--trim",
        type=int,
        help="N >= 0: pad each batch only to its longest text + N ids (graphs with a dynamic sequence axis)",
    )
    args, _ = parser.parse_known_args()
    if args.trim is not None and args.trim < 0:
        parser.error(f"--trim is {args.trim}; it must be at least 0")
    with open(args.manifest, encoding="utf-8") as manifest:
        serve(args, json.load(manifest))


if __name__ == "__main__":
    main()
