"""The hand-emitted ONNX graph must compute what Keras computes, with fused recurrent ops only.

Weights, biases included, are random and non-zero so that a wrong gate order or bias layout shows up
as a numeric mismatch; token ids include trailing padding (id 0) as the tokenizer produces.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from training.architectures import MaskedGlobalAveragePooling1D
from training.onnx_fused import UnsupportedLayerError, fused_onnx_from_keras

VOCAB = 200
MAX_LENGTH = 20
EMBEDDING_DIM = 8
TOLERANCE = 1e-5
LOOP_OPS = {"Loop", "Scan"}

layers = keras.layers
LayersFactory = Callable[[], list[keras.layers.Layer]]

# name -> (layers between Embedding and the head, op types the graph must contain)
BODIES: dict[str, tuple[LayersFactory, set[str]]] = {
    "flatten": (lambda: [layers.Flatten()], {"Gather", "Flatten"}),
    "gap": (lambda: [layers.Dropout(0.5), layers.GlobalAveragePooling1D()], {"ReduceMean"}),
    "conv": (
        lambda: [layers.Conv1D(8, 5, activation="relu"), layers.GlobalMaxPooling1D()],
        {"Conv", "Relu", "ReduceMax"},
    ),
    # Kernel 5, stride 3 over 20 steps needs 3 steps of padding: uneven, so its split is tested.
    "conv_same_strided": (
        lambda: [layers.Conv1D(6, 5, strides=3, padding="same", activation="tanh"), layers.Flatten()],
        {"Conv", "Tanh"},
    ),
    "rnn": (lambda: [layers.SimpleRNN(6)], {"RNN"}),
    "lstm": (lambda: [layers.SpatialDropout1D(0.3), layers.LSTM(6)], {"LSTM"}),
    "bilstm": (lambda: [layers.Bidirectional(layers.LSTM(6))], {"LSTM"}),
    "bilstm2": (
        lambda: [
            layers.Bidirectional(layers.LSTM(6, return_sequences=True)),
            layers.Bidirectional(layers.LSTM(5)),
        ],
        {"LSTM"},
    ),
    "bigru_reset_after": (lambda: [layers.Bidirectional(layers.GRU(6, reset_after=True))], {"GRU"}),
    "gru_reset_before": (lambda: [layers.GRU(6, reset_after=False)], {"GRU"}),
    "gru_without_bias": (lambda: [layers.GRU(6, use_bias=False)], {"GRU"}),
    "birnn_sequences_dense": (
        lambda: [
            layers.Bidirectional(layers.SimpleRNN(4, return_sequences=True)),
            layers.Dense(5, activation="relu"),
            layers.GlobalAveragePooling1D(),
        ],
        {"RNN"},
    ),
}

HEADS: dict[str, Callable[[], keras.layers.Layer]] = {
    "sigmoid": lambda: layers.Dense(1, activation="sigmoid"),
    "softmax": lambda: layers.Dense(3, activation="softmax"),
}


def build_model(body: list[keras.layers.Layer], head: keras.layers.Layer, seed: int) -> keras.Model:
    """A classifier over token ids with every weight (biases too) drawn at random."""
    model = keras.Sequential(
        [keras.Input((MAX_LENGTH,), dtype="int32"), layers.Embedding(VOCAB, EMBEDDING_DIM), *body, head]
    )
    rng = np.random.default_rng(seed)
    model.set_weights(
        [rng.normal(0.0, 0.5, weight.shape).astype(np.float32) for weight in model.get_weights()]
    )
    return model


def token_ids(seed: int, batch: int = 12) -> np.ndarray:
    """Random ids with padding after a random length per row, and one all-padding row."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, size=(batch, MAX_LENGTH), dtype=np.int32)
    lengths = rng.integers(0, MAX_LENGTH + 1, size=batch)
    lengths[0] = 0
    ids[np.arange(MAX_LENGTH) >= lengths[:, None]] = 0
    return ids


def run_onnx(model_proto: onnx.ModelProto, ids: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(["probabilities"], {"input_ids": ids})
    return probabilities


@pytest.mark.parametrize("head_name", sorted(HEADS))
@pytest.mark.parametrize("body_name", sorted(BODIES))
def test_onnx_matches_keras_with_fused_ops(body_name: str, head_name: str) -> None:
    make_body, expected_ops = BODIES[body_name]
    seed = sorted(BODIES).index(body_name)
    model = build_model(make_body(), HEADS[head_name](), seed)
    ids = token_ids(seed)

    model_proto = fused_onnx_from_keras(model, max_length=MAX_LENGTH)

    onnx.checker.check_model(model_proto, full_check=True)
    op_types = {node.op_type for node in model_proto.graph.node}
    assert expected_ops <= op_types
    assert not op_types & LOOP_OPS
    expected = model.predict(ids, verbose=0)
    actual = run_onnx(model_proto, ids)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=TOLERANCE)


def test_graph_io_names_types_and_dynamic_batch() -> None:
    model = build_model([layers.GlobalAveragePooling1D()], HEADS["softmax"](), seed=7)
    model_proto = fused_onnx_from_keras(model, max_length=MAX_LENGTH, input_name="ids", output_name="probs")

    (graph_input,), (graph_output,) = model_proto.graph.input, model_proto.graph.output
    assert (graph_input.name, graph_output.name) == ("ids", "probs")
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.INT32
    assert graph_output.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim] == [
        "batch",
        MAX_LENGTH,
    ]
    session = ort.InferenceSession(model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        (probabilities,) = session.run(None, {"ids": token_ids(seed=batch, batch=batch)})
        assert probabilities.shape == (batch, 3)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)


def test_opset_18_takes_reduce_axes_as_input() -> None:
    model = build_model([layers.GlobalMaxPooling1D()], HEADS["sigmoid"](), seed=3)
    ids = token_ids(seed=3)

    model_proto = fused_onnx_from_keras(model, max_length=MAX_LENGTH, opset=18)

    assert model_proto.opset_import[0].version == 18
    np.testing.assert_allclose(
        run_onnx(model_proto, ids), model.predict(ids, verbose=0), rtol=0, atol=TOLERANCE
    )


def test_max_length_must_match_the_model_input() -> None:
    model = build_model([layers.Flatten()], HEADS["sigmoid"](), seed=0)
    with pytest.raises(ValueError, match="max_length 30"):
        fused_onnx_from_keras(model, max_length=30)


def test_unsupported_layer_is_named() -> None:
    model = build_model([layers.LayerNormalization(name="odd_norm"), layers.Flatten()], HEADS["sigmoid"](), 0)
    with pytest.raises(UnsupportedLayerError, match=r"'odd_norm' \(LayerNormalization\)"):
        fused_onnx_from_keras(model, max_length=MAX_LENGTH)


def test_unsupported_recurrent_setting_is_named() -> None:
    model = build_model(
        [layers.Bidirectional(layers.LSTM(4), merge_mode="sum", name="summed")], HEADS["sigmoid"](), 0
    )
    with pytest.raises(UnsupportedLayerError, match=r"'summed'.*merge_mode"):
        fused_onnx_from_keras(model, max_length=MAX_LENGTH)


def test_head_without_probabilities_is_refused() -> None:
    model = build_model([layers.Flatten()], layers.Dense(1, name="logits"), 0)
    with pytest.raises(UnsupportedLayerError, match=r"'logits'.*sigmoid or softmax"):
        fused_onnx_from_keras(model, max_length=MAX_LENGTH)


def test_branching_functional_model_is_refused() -> None:
    inputs = keras.Input((MAX_LENGTH,), dtype="int32")
    embedded = layers.Embedding(VOCAB, EMBEDDING_DIM)(inputs)
    pooled = layers.GlobalAveragePooling1D()(embedded)
    peaks = layers.GlobalMaxPooling1D(name="peaks")(embedded)
    merged = layers.Concatenate()([pooled, peaks])
    model = keras.Model(inputs, layers.Dense(1, activation="sigmoid")(merged))
    with pytest.raises(UnsupportedLayerError, match="not a linear stack"):
        fused_onnx_from_keras(model, max_length=MAX_LENGTH)


# name -> (layers between a masking Embedding and the head, op types the graph must contain)
MASKED_BODIES: dict[str, tuple[LayersFactory, set[str]]] = {
    "gap": (lambda: [MaskedGlobalAveragePooling1D()], {"ReduceSum", "Div"}),
    "rnn": (lambda: [layers.SimpleRNN(6)], {"RNN"}),
    "bilstm": (lambda: [layers.Dropout(0.2), layers.Bidirectional(layers.LSTM(6))], {"LSTM"}),
    "bilstm2": (
        lambda: [
            layers.Bidirectional(layers.LSTM(6, return_sequences=True)),
            layers.Bidirectional(layers.LSTM(5)),
        ],
        {"LSTM"},
    ),
    "bigru": (lambda: [layers.Bidirectional(layers.GRU(6))], {"GRU"}),
}


def build_masked_model(body: list[keras.layers.Layer], seed: int) -> keras.Model:
    """Any input length; padding id 0 masked, as training.architectures builds its masked models."""
    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            layers.Embedding(VOCAB, EMBEDDING_DIM, mask_zero=True),
            *body,
            HEADS["sigmoid"](),
        ]
    )
    rng = np.random.default_rng(seed)
    model.set_weights(
        [rng.normal(0.0, 0.5, weight.shape).astype(np.float32) for weight in model.get_weights()]
    )
    return model


@pytest.mark.parametrize("body_name", sorted(MASKED_BODIES))
def test_masked_graph_matches_keras_on_full_and_on_batch_padding(body_name: str) -> None:
    """sequence_lens from the ids: the same outputs for ids padded to max_length and cut after the
    longest row; an empty row (all padding) gives zero pooled features / a zero state, not NaN."""
    make_body, expected_ops = MASKED_BODIES[body_name]
    model = build_masked_model(make_body(), seed=sorted(MASKED_BODIES).index(body_name))
    ids = token_ids(seed=11)
    ids[1:4, 9:] = 0  # a batch of rows no longer than 9 tokens, beside the empty row 0
    model_proto = fused_onnx_from_keras(model, max_length=MAX_LENGTH)

    op_types = {node.op_type for node in model_proto.graph.node}
    assert expected_ops <= op_types and not op_types & LOOP_OPS
    (graph_input,) = model_proto.graph.input
    assert graph_input.type.tensor_type.shape.dim[1].dim_param == "sequence"
    expected = np.asarray(model(ids, training=False))
    assert np.isfinite(expected).all()
    np.testing.assert_allclose(run_onnx(model_proto, ids), expected, rtol=0, atol=TOLERANCE)
    short = ids[:4, :9]
    np.testing.assert_allclose(run_onnx(model_proto, short), expected[:4], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(np.asarray(model(short, training=False)), expected[:4], rtol=0, atol=TOLERANCE)


def test_masked_sequence_into_a_layer_that_reads_padding_is_refused() -> None:
    model = keras.Sequential(
        [
            keras.Input((MAX_LENGTH,), dtype="int32"),
            layers.Embedding(VOCAB, EMBEDDING_DIM, mask_zero=True),
            layers.Conv1D(4, 3, name="reads_padding"),
            layers.GlobalMaxPooling1D(),
            layers.Dense(1, activation="sigmoid"),
        ]
    )
    with pytest.raises(UnsupportedLayerError, match=r"reads_padding.*masked sequence"):
        fused_onnx_from_keras(model, max_length=MAX_LENGTH)
