"""Write a trained Keras text classifier as one ONNX graph of fused ops, straight from its layer weights.

Why not tf2onnx alone: with Keras 3 on the TensorFlow backend, GRU layers trace to a generic while_loop
that tf2onnx's GRU rewriter does not recognise, and SimpleRNN has no fused rewrite at all, so both
convert to ONNX `Loop` graphs, whose per-step overhead makes them several times slower than ONNX
Runtime's fused `GRU`/`RNN` kernels at small batches (bench/onnx_fused_vs_loop.py measures both).
seqserve's networks are linear stacks of a few layer types, so emitting the graph from the weights is
short and exact, and depends on no pattern matching of traced TensorFlow graphs.

The graph maps int32 token ids [batch, length] to float32 probabilities; the batch dimension is
dynamic, and so is length when the Keras model takes any length (its input shape is (None,)).

Masking: an `Embedding(mask_zero=True)` marks padding id 0. Padding always follows the text, so the
real length of each row is its count of non-zero ids; the graph computes it once and hands it to the
fused recurrent ops as `sequence_lens` (which then stop at the last real token, and run a
Bidirectional layer's backward direction from it) and to the masked average pooling. A masked
sequence may only flow into those layers: anything else would read the padding that Keras hides.

Each supported Keras layer class has one emitter below, registered by class name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Softmax over the last axis (not a 2-D coercion) needs opset 13.
MIN_OPSET = 13
# ReduceMean/ReduceMax take their axes as an input instead of an attribute from this opset on.
REDUCE_AXES_AS_INPUT_OPSET = 18
REDUCE_SUM_AXES_AS_INPUT_OPSET = 13
# Layers that are the identity at inference time.
PASS_THROUGH_LAYERS = frozenset({"InputLayer", "Dropout", "SpatialDropout1D"})
# Final activations whose outputs are probabilities.
PROBABILITY_ACTIVATIONS = frozenset({"sigmoid", "softmax"})


class UnsupportedLayerError(ValueError):
    """A layer (or a layer setting) that has no ONNX translation here; the message names the layer."""

    def __init__(self, layer: keras.layers.Layer, reason: str) -> None:
        super().__init__(f"layer {layer.name!r} ({type(layer).__name__}): {reason}")


@dataclass(frozen=True)
class Value:
    """A graph value: its name and its shape without the (dynamic) batch dimension; None marks a
    dynamic sequence length. `masked` is True while Keras carries a padding mask along with it."""

    name: str
    shape: tuple[int | None, ...]
    masked: bool = False


class GraphBuilder:
    """Collects nodes and initializers; every name is prefixed by the Keras layer that made it."""

    def __init__(self, opset: int) -> None:
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        # Set by a masking Embedding: int32 [batch] real lengths, float [batch, seq, 1] 1/0 weights.
        self.sequence_lens: str | None = None
        self.mask_weights: str | None = None

    def constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: Sequence[str], outputs: Sequence[str], **attributes: Any) -> list[str]:
        self.nodes.append(helper.make_node(op, list(inputs), list(outputs), name=outputs[-1], **attributes))
        return list(outputs)

    def op(self, op: str, inputs: Sequence[str], output: str, **attributes: Any) -> str:
        """A single-output node; returns the output's name."""
        return self.node(op, inputs, [output], **attributes)[0]

    def transpose(self, x: str, perm: Sequence[int], output: str) -> str:
        return self.op("Transpose", [x], output, perm=list(perm))

    def reshape(self, x: str, shape: Sequence[int], output: str) -> str:
        """Reshape where 0 keeps that input dimension (the dynamic batch) and -1 is inferred."""
        target = self.constant(f"{output}/shape", np.array(shape, dtype=np.int64))
        return self.op("Reshape", [x, target], output)

    def reduce(self, op: str, x: str, axis: int, keepdims: bool, output: str) -> str:
        # ReduceSum moved its axes to an input in opset 13, the other reductions in 18.
        if self.opset >= (
            REDUCE_SUM_AXES_AS_INPUT_OPSET if op == "ReduceSum" else REDUCE_AXES_AS_INPUT_OPSET
        ):
            axes = self.constant(f"{output}/axes", np.array([axis], dtype=np.int64))
            return self.op(op, [x, axes], output, keepdims=int(keepdims))
        return self.op(op, [x], output, axes=[axis], keepdims=int(keepdims))


Emitter = Callable[[GraphBuilder, keras.layers.Layer, Value], Value]
EMITTERS: dict[str, Emitter] = {}


def _emits(*class_names: str) -> Callable[[Emitter], Emitter]:
    def register(emitter: Emitter) -> Emitter:
        for class_name in class_names:
            EMITTERS[class_name] = emitter
        return emitter

    return register


def fused_onnx_from_keras(
    model: keras.Model,
    *,
    max_length: int,
    input_name: str = "input_ids",
    output_name: str = "probabilities",
    opset: int = 17,
) -> onnx.ModelProto:
    """The model's inference graph as ONNX, recurrent layers as fused LSTM/GRU/RNN ops (never Loop).

    The model must be a linear stack (Sequential, or a functional chain) starting at int32 token ids
    and ending in a Dense layer with a sigmoid or softmax activation. A model whose input length is
    None gets a graph with a dynamic sequence axis; `max_length` is then the longest it is meant for.
    """
    if not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise ValueError(f"opset {opset} is outside {MIN_OPSET}..{onnx.defs.onnx_opset_version()}")
    model_length = model.inputs[0].shape[-1]
    if model_length is not None and model_length != max_length:
        raise ValueError(f"max_length {max_length} differs from the model's input length {model_length}")
    _check_probability_head(model.layers[-1])
    graph = GraphBuilder(opset)
    value = Value(input_name, (model_length,))
    for layer in _linear_stack(model):
        class_name = type(layer).__name__
        if class_name in PASS_THROUGH_LAYERS:
            continue
        emitter = EMITTERS.get(class_name)
        if emitter is None:
            raise UnsupportedLayerError(layer, f"no ONNX emitter for {class_name}")
        if value.masked and class_name not in MASK_CONSUMERS:
            raise UnsupportedLayerError(layer, "a masked sequence may only feed pooling or recurrent layers")
        value = emitter(graph, layer, value)
    graph.op("Identity", [value.name], output_name)
    onnx_graph = helper.make_graph(
        graph.nodes,
        model.name,
        inputs=[
            helper.make_tensor_value_info(
                input_name, TensorProto.INT32, ["batch", model_length or "sequence"]
            )
        ],
        outputs=[helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", *value.shape])],
        initializer=graph.initializers,
    )
    onnx_model = helper.make_model(
        onnx_graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="seqserve.training.onnx_fused",
    )
    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model


def _linear_stack(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """The layers in order, each checked, as it is reached, to consume exactly the previous output.

    Walking `model.layers` is only the inference graph when the model has no branches; a functional
    model with skips or merges would otherwise be translated silently wrong. Checking lazily lets a
    layer's own, more specific error (e.g. an Embedding's masking, which adds a mask input to the
    next layer) come first.
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"model {model.name!r} must have one input and one output")
    expected = model.inputs[0]
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        if _data_input(layer) is not expected:
            raise UnsupportedLayerError(layer, "the model is not a linear stack of layers")
        yield layer
        expected = layer.output
    if expected is not model.outputs[0]:
        raise ValueError(f"model {model.name!r}: the last layer's output is not the model output")


def _data_input(layer: keras.layers.Layer) -> Any:
    """The layer's input tensor; a masked layer's node also lists the boolean mask Keras passes along."""
    inputs = layer.input
    if isinstance(inputs, list) and len(inputs) == 2 and inputs[1].dtype == "bool":
        return inputs[0]
    return inputs


def _check_probability_head(head: keras.layers.Layer) -> None:
    if type(head).__name__ != "Dense" or _activation_name(head.activation) not in PROBABILITY_ACTIVATIONS:
        raise UnsupportedLayerError(head, "the model must end in a Dense layer with sigmoid or softmax")


def _numpy(variable: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float32)


def _activation_name(activation: Callable[..., Any]) -> str:
    return str(keras.activations.serialize(activation))


# Keras activation name -> ONNX operator, for Dense and Conv1D outputs.
ACTIVATION_OPS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softmax": "Softmax"}


def _activate(graph: GraphBuilder, layer: keras.layers.Layer, x: Value) -> Value:
    name = _activation_name(layer.activation)
    if name == "linear":
        return x
    if name not in ACTIVATION_OPS:
        raise UnsupportedLayerError(layer, f"activation {name!r} is not supported")
    attributes = {"axis": -1} if name == "softmax" else {}
    output = graph.op(ACTIVATION_OPS[name], [x.name], f"{layer.name}/{name}", **attributes)
    return Value(output, x.shape)


def _require_channels_last(layer: keras.layers.Layer) -> None:
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise UnsupportedLayerError(layer, f"data_format {layer.data_format!r} is not supported")


@_emits("Embedding")
def _embedding(graph: GraphBuilder, layer: keras.layers.Layer, x: Value) -> Value:
    """Gather rows of the embedding matrix; int32 ids are valid Gather indices."""
    table = graph.constant(f"{layer.name}/embeddings", _numpy(layer.embeddings))
    output = graph.op("Gather", [table, x.name], f"{layer.name}/gather", axis=0)
    if layer.mask_zero:
        _emit_mask(graph, layer, x)
    return Value(output, (*x.shape, layer.output_dim), masked=layer.mask_zero)


def _emit_mask(graph: GraphBuilder, layer: keras.layers.Layer, ids: Value) -> None:
    """ids != 0 as float weights [batch, seq, 1] and as int32 real lengths [batch]."""
    if graph.sequence_lens is not None:
        raise UnsupportedLayerError(layer, "only one masking Embedding is supported")
    prefix = f"{layer.name}/mask"
    pad = graph.constant(f"{prefix}/pad_id", np.array(0, dtype=np.int32))
    real = graph.op("Not", [graph.op("Equal", [ids.name, pad], f"{prefix}/is_pad")], f"{prefix}/is_real")
    lengths = graph.op("Cast", [real], f"{prefix}/int", to=TensorProto.INT32)
    graph.sequence_lens = graph.reduce(
        "ReduceSum", lengths, axis=1, keepdims=False, output=f"{prefix}/lengths"
    )
    weights = graph.op("Cast", [real], f"{prefix}/float", to=TensorProto.FLOAT)
    axes = graph.constant(f"{prefix}/axes", np.array([2], dtype=np.int64))
    graph.mask_weights = graph.op("Unsqueeze", [weights, axes], f"{prefix}/weights")


@_emits("Flatten")
def _flatten(graph: GraphBuilder, layer: keras.layers.Layer, x: Value) -> Value:
    """Keras and ONNX Flatten both keep row-major order, so [batch, seq, dim] -> [batch, seq*dim]."""
    _require_channels_last(layer)
    if None in x.shape:
        raise UnsupportedLayerError(layer, "Flatten needs a fixed input length")
    output = graph.op("Flatten", [x.name], f"{layer.name}/flatten", axis=1)
    return Value(output, (int(np.prod(x.shape)),))


def _global_pooling(op: str) -> Emitter:
    def emit(graph: GraphBuilder, layer: keras.layers.Layer, x: Value) -> Value:
        """Reduce over the time axis (1) of [batch, seq, channels]."""
        _require_channels_last(layer)
        output = graph.reduce(op, x.name, axis=1, keepdims=layer.keepdims, output=f"{layer.name}/{op}")
        return Value(output, (1, x.shape[1]) if layer.keepdims else (x.shape[1],))

    return emit


_emits("GlobalMaxPooling1D")(_global_pooling("ReduceMax"))
_unmasked_average = _emits("GlobalAveragePooling1D")(_global_pooling("ReduceMean"))


@_emits("MaskedGlobalAveragePooling1D")
def _masked_average(graph: GraphBuilder, layer: keras.layers.Layer, x: Value) -> Value:
    """sum(x * mask) / max(real tokens, 1) over the time axis, as training.architectures defines it."""
    if not x.masked:
        return _unmasked_average(graph, layer, x)
    _require_channels_last(layer)
    keep, prefix = bool(layer.keepdims), layer.name
    weighted = graph.op("Mul", [x.name, graph.mask_weights], f"{prefix}/weighted")
    total = graph.reduce("ReduceSum", weighted, axis=1, keepdims=keep, output=f"{prefix}/total")
    count = graph.reduce("ReduceSum", graph.mask_weights, axis=1, keepdims=keep, output=f"{prefix}/count")
    one = graph.constant(f"{prefix}/one", np.array(1.0, dtype=np.float32))
    divisor = graph.op("Max", [count, one], f"{prefix}/divisor")
    output = graph.op("Div", [total, divisor], f"{prefix}/mean")
    return Value(output, (1, x.shape[1]) if keep else (x.shape[1],))


@_emits("Dense")
def _dense(graph: GraphBuilder, layer: keras.layers.Layer, x: Value) -> Value:
    """MatMul over the last axis, as Keras does for inputs of any rank."""
    kernel = graph.constant(f"{layer.name}/kernel", _numpy(layer.kernel))
    output = graph.op("MatMul", [x.name, kernel], f"{layer.name}/matmul")
    if layer.bias is not None:
        bias = graph.constant(f"{layer.name}/bias", _numpy(layer.bias))
        output = graph.op("Add", [output, bias], f"{layer.name}/bias_add")
    return _activate(graph, layer, Value(output, (*x.shape[:-1], layer.units)))


@_emits("Conv1D")
def _conv1d(graph: GraphBuilder, layer: keras.layers.Layer, x: Value) -> Value:
    """ONNX Conv is channels-first, so transpose around it; the kernel goes (k, in, out) -> (out, in, k).

    "same" padding follows TensorFlow: the total padding is split with the odd element at the end.
    """
    _require_channels_last(layer)
    if layer.groups != 1:
        raise UnsupportedLayerError(layer, "grouped convolution is not supported")
    if layer.padding not in ("valid", "same"):
        raise UnsupportedLayerError(layer, f"padding {layer.padding!r} is not supported")
    length = x.shape[0]
    (size,), (stride,), (dilation,) = layer.kernel_size, layer.strides, layer.dilation_rate
    span = (size - 1) * dilation + 1
    if layer.padding == "same":
        if length is None:
            raise UnsupportedLayerError(layer, "'same' padding needs a fixed input length")
        out_length: int | None = -(-length // stride)
        total = max((out_length - 1) * stride + span - length, 0)
        pads = [total // 2, total - total // 2]
    else:
        out_length = None if length is None else (length - span) // stride + 1
        pads = [0, 0]
    inputs = [
        graph.transpose(x.name, [0, 2, 1], f"{layer.name}/channels_first"),
        graph.constant(f"{layer.name}/kernel", _numpy(layer.kernel).transpose(2, 1, 0).copy()),
    ]
    if layer.bias is not None:
        inputs.append(graph.constant(f"{layer.name}/bias", _numpy(layer.bias)))
    conv = graph.op(
        "Conv",
        inputs,
        f"{layer.name}/conv",
        kernel_shape=[size],
        strides=[stride],
        dilations=[dilation],
        pads=pads,
    )
    output = graph.transpose(conv, [0, 2, 1], f"{layer.name}/channels_last")
    return _activate(graph, layer, Value(output, (out_length, layer.filters)))


# --- recurrent layers -------------------------------------------------------------------------------

# Keras activation name -> ONNX recurrent activation name (those ONNX Runtime implements).
RECURRENT_ACTIVATIONS = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu"}


@dataclass(frozen=True)
class DirectionWeights:
    """One direction's ONNX inputs: W [gates*units, in], R [gates*units, units], B [2*gates*units]."""

    w: np.ndarray
    r: np.ndarray
    b: np.ndarray
    activations: list[str]
    attributes: dict[str, int]


def _gate_columns(matrix: np.ndarray, order: Sequence[int], units: int) -> np.ndarray:
    """Reorder the gate blocks along the last axis (Keras packs gates column-wise)."""
    return np.concatenate([matrix[..., gate * units : (gate + 1) * units] for gate in order], axis=-1)


def _onnx_activations(layer: keras.layers.Layer, *activations: Callable[..., Any]) -> list[str]:
    names = [_activation_name(activation) for activation in activations]
    unsupported = [name for name in names if name not in RECURRENT_ACTIVATIONS]
    if unsupported:
        raise UnsupportedLayerError(layer, f"recurrent activation(s) {unsupported} are not supported")
    return [RECURRENT_ACTIVATIONS[name] for name in names]


def _direction_weights(
    layer: keras.layers.Layer,
    gate_order: Sequence[int],
    input_bias: np.ndarray | None,
    recurrent_bias: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """W and R transposed to ONNX's [gates*units, features] and B = [Wb, Rb], gates in ONNX order.

    A missing bias is zeros; only GRU with reset_after has a separate recurrent bias.
    """
    cell, units = layer.cell, layer.units
    zeros = np.zeros(len(gate_order) * units, dtype=np.float32)
    w, r, wb, rb = (
        _gate_columns(matrix, gate_order, units)
        for matrix in (
            _numpy(cell.kernel),
            _numpy(cell.recurrent_kernel),
            zeros if input_bias is None else input_bias,
            zeros if recurrent_bias is None else recurrent_bias,
        )
    )
    return np.ascontiguousarray(w.T), np.ascontiguousarray(r.T), np.concatenate([wb, rb])


def _lstm_direction(layer: keras.layers.Layer) -> DirectionWeights:
    """Keras packs LSTM gates as [i, f, c, o]; ONNX wants [i, o, f, c].

    ONNX activations are (f: gates, g: cell input, h: cell output) = Keras (recurrent_activation,
    activation, activation). Keras has a single bias, so it fills ONNX's Wb and Rb stays zero.
    """
    cell = layer.cell
    bias = _numpy(cell.bias) if cell.use_bias else None
    w, r, b = _direction_weights(layer, [0, 3, 1, 2], bias)
    activations = _onnx_activations(layer, cell.recurrent_activation, cell.activation, cell.activation)
    return DirectionWeights(w, r, b, activations, {})


def _gru_direction(layer: keras.layers.Layer) -> DirectionWeights:
    """Keras and ONNX both pack GRU gates as [z, r, h] and both compute h' = z*h + (1-z)*candidate.

    reset_after=True applies the reset gate after the recurrent matmul and its own recurrent bias
    (Keras bias shape (2, 3*units) = input bias, recurrent bias): that is ONNX linear_before_reset=1
    with B = [Wb, Rb]. reset_after=False applies it before the matmul with one bias: ONNX
    linear_before_reset=0 with Rb zero.
    """
    cell = layer.cell
    bias = _numpy(cell.bias) if cell.use_bias else None
    if bias is not None and cell.reset_after:
        w, r, b = _direction_weights(layer, [0, 1, 2], bias[0], bias[1])
    else:
        w, r, b = _direction_weights(layer, [0, 1, 2], bias)
    activations = _onnx_activations(layer, cell.recurrent_activation, cell.activation)
    return DirectionWeights(w, r, b, activations, {"linear_before_reset": int(cell.reset_after)})


def _simple_rnn_direction(layer: keras.layers.Layer) -> DirectionWeights:
    """A single gate: h' = activation(x W + h R + b), ONNX RNN with that one activation."""
    cell = layer.cell
    bias = _numpy(cell.bias) if cell.use_bias else None
    w, r, b = _direction_weights(layer, [0], bias)
    return DirectionWeights(w, r, b, _onnx_activations(layer, cell.activation), {})


# Layers that honour a padding mask (everything else would read the padding Keras hides).
MASK_CONSUMERS = frozenset(
    {"MaskedGlobalAveragePooling1D", "LSTM", "GRU", "SimpleRNN", "Bidirectional", *PASS_THROUGH_LAYERS}
)

# Keras recurrent layer class -> (ONNX fused operator, weights of one direction).
RECURRENT_OPS: dict[str, tuple[str, Callable[[keras.layers.Layer], DirectionWeights]]] = {
    "LSTM": ("LSTM", _lstm_direction),
    "GRU": ("GRU", _gru_direction),
    "SimpleRNN": ("RNN", _simple_rnn_direction),
}


def _check_recurrent(layer: keras.layers.Layer, direction: keras.layers.Layer) -> None:
    if direction.return_state or direction.stateful:
        raise UnsupportedLayerError(layer, "return_state and stateful are not supported")
    if type(direction).__name__ not in RECURRENT_OPS:
        raise UnsupportedLayerError(layer, f"no fused ONNX op for {type(direction).__name__}")


def _emit_recurrent(
    graph: GraphBuilder, layer: keras.layers.Layer, directions: Sequence[keras.layers.Layer], x: Value
) -> Value:
    """One fused op over [seq, batch, features] (layout 0, the only one ONNX Runtime implements).

    Y is [seq, directions, batch, units] and Y_h [directions, batch, units]; moving the directions
    axis next to units and merging the two gives Keras's concat order, forward then backward, and a
    Bidirectional backward output aligned with the input time steps, as Keras returns it.
    """
    for direction in directions:
        _check_recurrent(layer, direction)
    op, weights_of = RECURRENT_OPS[type(directions[0]).__name__]
    weights = [weights_of(direction) for direction in directions]
    if any(w.attributes != weights[0].attributes for w in weights):
        raise UnsupportedLayerError(layer, "forward and backward layers differ in reset_after")
    units, prefix = directions[0].units, layer.name
    inputs = [
        graph.transpose(x.name, [1, 0, 2], f"{prefix}/time_major"),
        graph.constant(f"{prefix}/W", np.stack([w.w for w in weights])),
        graph.constant(f"{prefix}/R", np.stack([w.r for w in weights])),
        graph.constant(f"{prefix}/B", np.stack([w.b for w in weights])),
    ]
    if x.masked:
        inputs.append(graph.sequence_lens)
    y, y_h = graph.node(
        op,
        inputs,
        [f"{prefix}/Y", f"{prefix}/Y_h"],
        hidden_size=units,
        direction="bidirectional" if len(directions) == 2 else "forward",
        activations=[name for w in weights for name in w.activations],
        **weights[0].attributes,
    )
    features = len(directions) * units
    if layer.return_sequences:
        batch_major = graph.transpose(y, [2, 0, 1, 3], f"{prefix}/batch_major")
        sequences = graph.reshape(batch_major, [0, 0, -1], f"{prefix}/sequences")
        return Value(sequences, (x.shape[0], features), masked=x.masked)
    batch_major = graph.transpose(y_h, [1, 0, 2], f"{prefix}/batch_major")
    return Value(graph.reshape(batch_major, [0, -1], f"{prefix}/last"), (features,))


@_emits(*RECURRENT_OPS)
def _recurrent(graph: GraphBuilder, layer: keras.layers.Layer, x: Value) -> Value:
    if layer.go_backwards:
        raise UnsupportedLayerError(layer, "go_backwards outside Bidirectional is not supported")
    return _emit_recurrent(graph, layer, [layer], x)


@_emits("Bidirectional")
def _bidirectional(graph: GraphBuilder, layer: keras.layers.Layer, x: Value) -> Value:
    """ONNX direction="bidirectional" with forward weights first, then backward."""
    if layer.merge_mode != "concat":
        raise UnsupportedLayerError(layer, f"merge_mode {layer.merge_mode!r} is not supported")
    forward, backward = layer.forward_layer, layer.backward_layer
    if forward.go_backwards or not backward.go_backwards:
        raise UnsupportedLayerError(layer, "expected a forward layer and a go_backwards layer")
    return _emit_recurrent(graph, layer, [forward, backward], x)
