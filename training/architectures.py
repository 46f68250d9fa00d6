"""The model zoo: Embedding -> body -> Dense(relu) -> Dense(sigmoid | softmax), one builder per name.

The bodies and sizes follow the TensorFlow course's NLP examples, so the report can test that course's
claims about them. Conv1D pools with GlobalMaxPooling1D (as the course's sarcasm Conv1D example does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras

from training.settings import ArchitectureSettings

Body = Callable[[ArchitectureSettings], list[keras.layers.Layer]]


@dataclass(frozen=True)
class Architecture:
    name: str
    description: str
    dense_units: int  # default width of the Dense(relu) layer after the body
    body: Body


def _flatten(_: ArchitectureSettings) -> list[keras.layers.Layer]:
    return [keras.layers.Flatten()]


def _gap(_: ArchitectureSettings) -> list[keras.layers.Layer]:
    return [keras.layers.GlobalAveragePooling1D()]


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
        Architecture("gap", "GlobalAveragePooling1D (no recurrence)", 24, _gap),
        Architecture("rnn", "SimpleRNN", 24, _rnn),
        Architecture("lstm", "Bidirectional LSTM", 24, _lstm),
        Architecture("lstm2", "two stacked Bidirectional LSTMs", 6, _lstm2),
        Architecture("gru", "Bidirectional GRU", 6, _gru),
        Architecture("conv", "Conv1D + GlobalMaxPooling1D", 6, _conv),
    )
}


def build_model(name: str, settings: ArchitectureSettings) -> keras.Model:
    """An uncompiled functional model: int32 `input_ids` [batch, max_length] -> probabilities."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose from {', '.join(ARCHITECTURES)}")
    architecture = ARCHITECTURES[name]
    inputs = keras.Input(shape=(settings.max_length,), dtype="int32", name="input_ids")
    x = keras.layers.Embedding(settings.vocab_size, settings.embedding_dim)(inputs)
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
