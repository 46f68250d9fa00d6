"""ONNX Runtime latency of tf2onnx's conversion against the fused-op graph, per recurrent layer type.

tf2onnx fuses a Keras 3 Bidirectional LSTM into an ONNX `LSTM`, but a GRU and a SimpleRNN come out
as `Loop` graphs; `training.onnx_fused` writes every recurrent layer as its fused op. This prints, for
the same random-weight model converted both ways, the graph's op types, the largest output
difference between the two graphs, and the median latency at batch 1 and 32.

    .venv/bin/python -m bench.studies.onnx_fused_vs_loop [--threads 1] [--runs 200] [--seconds 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import keras
import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
import tf2onnx

from training.onnx_fused import fused_onnx_from_keras

VOCAB = 10_000
MAX_LENGTH = 120
EMBEDDING_DIM = 16
UNITS = 32
OPSET = 17
BATCH_SIZES = (1, 32)
WARMUP_RUNS = 5

RECURRENT_BODIES: dict[str, Callable[[], keras.layers.Layer]] = {
    "bilstm": lambda: keras.layers.Bidirectional(keras.layers.LSTM(UNITS)),
    "bigru": lambda: keras.layers.Bidirectional(keras.layers.GRU(UNITS)),
    "simplernn": lambda: keras.layers.SimpleRNN(UNITS),
}


def build_model(body: keras.layers.Layer) -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((MAX_LENGTH,), dtype="int32"),
            keras.layers.Embedding(VOCAB, EMBEDDING_DIM),
            body,
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0.0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()])
    return model


def tf2onnx_model(model: keras.Model) -> onnx.ModelProto:
    signature = (tf.TensorSpec((None, MAX_LENGTH), tf.int32, name="input_ids"),)

    @tf.function(input_signature=signature)
    def serve(input_ids: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"probabilities": model(input_ids, training=False)}

    model_proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=OPSET)
    return model_proto


def median_latency_ms(session: ort.InferenceSession, ids: np.ndarray, runs: int, seconds: float) -> float:
    """Median of up to `runs` timed calls, stopping early once `seconds` have been spent."""
    feed = {session.get_inputs()[0].name: ids}
    for _ in range(WARMUP_RUNS):
        session.run(None, feed)
    timings: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(timings) < runs and time.perf_counter() < deadline:
        start = time.perf_counter()
        session.run(None, feed)
        timings.append(time.perf_counter() - start)
    return 1000 * statistics.median(timings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--runs", type=int, default=200, help="timed runs per measurement, at most")
    parser.add_argument("--seconds", type=float, default=20.0, help="time budget per measurement")
    args = parser.parse_args(argv)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    rng = np.random.default_rng(1)
    inputs = {batch: rng.integers(0, VOCAB, (batch, MAX_LENGTH), dtype=np.int32) for batch in BATCH_SIZES}

    header = f"{'model':<10} {'converter':<10} {'recurrent ops':<14} {'max |diff|':>10}"
    print(header + "".join(f" {f'batch {b} ms':>12}" for b in BATCH_SIZES))
    for name, make_body in RECURRENT_BODIES.items():
        model = build_model(make_body())
        converted = {
            "tf2onnx": tf2onnx_model(model),
            "fused": fused_onnx_from_keras(model, max_length=MAX_LENGTH),
        }
        sessions = {
            converter: ort.InferenceSession(proto.SerializeToString(), options, ["CPUExecutionProvider"])
            for converter, proto in converted.items()
        }
        outputs = {c: s.run(None, {s.get_inputs()[0].name: inputs[32]})[0] for c, s in sessions.items()}
        difference = float(np.abs(outputs["tf2onnx"] - outputs["fused"]).max())
        for converter, proto in converted.items():
            ops = {node.op_type for node in proto.graph.node} & {"LSTM", "GRU", "RNN", "Loop", "Scan"}
            session = sessions[converter]
            latencies = [median_latency_ms(session, inputs[b], args.runs, args.seconds) for b in BATCH_SIZES]
            row = f"{name:<10} {converter:<10} {','.join(sorted(ops)):<14} {difference:>10.2e}"
            print(row + "".join(f" {ms:>12.3f}" for ms in latencies), flush=True)


if __name__ == "__main__":
    main()
