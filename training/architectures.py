"""The model zoo: Embedding -> body -> Dense(relu) -> Dense(sigmoid | softmax), one builder per name.

The bodies and sizes follow the TensorFlow course's NLP examples, so the report can test that course's
claims about them. Conv1D pools with GlobalMaxPooling1D (as the course's sarcasm Conv1D example does).

How each body treats padding (id 0, always after the text) decides what length its input may have:
- masked (gap, rnn, lstm, lstm2, gru): `Embedding(mask_zero=True)`, so pooling averages only the real
  tokens and recurrent layers stop at the last one (a Bidirectional layer reverses only the real
  tokens). Padding changes nothing, so a batch needs padding only to its longest text.
- conv: Conv1D has no mask, but a window made only of padding is the same everywhere, so the max-pool
  over a text padded to max_length equals the one over the text padded by `kernel_size` ids (the first
  all-padding window): see `SequencePolicy.trailing_padding`.
- flatten: its Dense reads every position, so it keeps max_length.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras

from seqserve.v1 import model_config_pb2
from training.settings import ArchitectureSettings

Body = Callable[[ArchitectureSettings], list[keras.layers.Layer]]


@dataclass(frozen=True)
class Architecture:
    name: str
    description: str
    dense_units: int  # default width of the Dense(relu) layer after the body
    body: Body
    masked: bool = False  # the Embedding masks padding id 0 for the body
    variable_length: bool = False  # the graph takes [batch, L] for any 1 <= L <= max_length


@dataclass(frozen=True)
class SequencePolicy:
    """What config.pbtxt's `sequence` records: how far a batch of this model must be padded."""

    variable_length: bool
    trailing_padding: int

    def config(self) -> model_config_pb2.SequenceInput:
        return model_config_pb2.SequenceInput(
            variable_length=self.variable_length, trailing_padding=self.trailing_padding
        )


def sequence_policy(name: str, settings: ArchitectureSettings) -> SequencePolicy:
    architecture = ARCHITECTURES[name]
    trailing = settings.conv_kernel_size if architecture.variable_length and not architecture.masked else 0
    return SequencePolicy(variable_length=architecture.variable_length, trailing_padding=trailing)


class MaskedGlobalAveragePooling1D(keras.layers.GlobalAveragePooling1D):
    """The mean over the real tokens; a text with none (an empty string) pools to zeros.

    Keras's own layer divides by the number of real tokens, which is 0/0 = NaN for an empty text.
    """

    def call(self, inputs, mask=None):  # type: ignore[override]
        if mask is None:
            return super().call(inputs)
        weights = keras.ops.cast(keras.ops.expand_dims(mask, 2), inputs.dtype)
        total = keras.ops.sum(inputs * weights, axis=1, keepdims=self.keepdims)
        count = keras.ops.sum(weights, axis=1, keepdims=self.keepdims)
        return total / keras.ops.maximum(count, 1.0)


def _flatten(_: ArchitectureSettings) -> list[keras.layers.Layer]:
    return [keras.layers.Flatten()]


def _gap(_: ArchitectureSettings) -> list[keras.layers.Layer]:
    return [MaskedGlobalAveragePooling1D()]


def _rnn(s: ArchitectureSettings) -> list[keras.layers.Layer]:
    return [keras.layers.SimpleRNN(s.rnn_units)]


def _lstm(s: ArchitectureSettings) -> list[keras.layers.Layer]:
    return [keras.layers.Bidirectional(keras.layers.LSTM(s.rnn_units))]


def _lstm2(s: ArchitectureSettings) -> list[keras.layers.Layer]:
    return [
        keras.layers.Bidirectional(keras.layers.LSTM(s.rnn_units, return_sequences=True)),
        keras.layers.Bidirectional(keras.layers.LSTM(s.second_rnn_units)),
    ]


def _gru(s: ArchitectureSettings) -> list[keras.layers.Layer]:
    return [keras.layers.Bidirectional(keras.layers.GRU(s.rnn_units))]


def _conv(s: ArchitectureSettings) -> list[keras.layers.Layer]:
    return [
        keras.layers.Conv1D(s.conv_filters, s.conv_kernel_size, activation="relu"),
        keras.layers.GlobalMaxPooling1D(),
    ]


ARCHITECTURES: dict[str, Architecture] = {
    architecture.name: architecture
    for architecture in (
        Architecture("flatten", "Flatten of the embeddings", 6, _flatten),
        Architecture("gap", "masked GlobalAveragePooling1D (no recurrence)", 24, _gap, True, True),
        Architecture("rnn", "masked SimpleRNN", 24, _rnn, True, True),
        Architecture("lstm", "masked Bidirectional LSTM", 24, _lstm, True, True),
        Architecture("lstm2", "two stacked masked Bidirectional LSTMs", 6, _lstm2, True, True),
        Architecture("gru", "masked Bidirectional GRU", 6, _gru, True, True),
        Architecture("conv", "Conv1D + GlobalMaxPooling1D", 6, _conv, False, True),
    )
}


def build_model(name: str, settings: ArchitectureSettings) -> keras.Model:
    """An uncompiled functional model: int32 `input_ids` [batch, length] -> probabilities, where length
    is max_length for fixed-length bodies and any length up to it for the others."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose from {', '.join(ARCHITECTURES)}")
    architecture = ARCHITECTURES[name]
    length = None if architecture.variable_length else settings.max_length
    inputs = keras.Input(shape=(length,), dtype="int32", name="input_ids")
    x = keras.layers.Embedding(settings.vocab_size, settings.embedding_dim, mask_zero=architecture.masked)(
        inputs
    )
    for layer in architecture.body(settings):
        x = layer(x)
    dense_units = settings.dense_units or architecture.dense_units
    x = keras.layers.Dense(dense_units, activation="relu")(x)
    if settings.num_outputs == 1:
        outputs = keras.layers.Dense(1, activation="sigmoid", name="probabilities")(x)
    else:
        outputs = keras.layers.Dense(settings.num_outputs, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


def compile_model(model: keras.Model, num_outputs: int, learning_rate: float) -> None:
    """Keyword arguments only: Keras 3's third positional argument of compile() is loss_weights."""
    loss = "binary_crossentropy" if num_outputs == 1 else "sparse_categorical_crossentropy"
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss=loss, metrics=["accuracy"]
    )
