"""The model zoo builds the documented layer stacks for binary and multi-class outputs."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from training.architectures import ARCHITECTURES, build_model, compile_model
from training.settings import ArchitectureSettings

# Body layer types between the Embedding and the Dense head, per architecture.
EXPECTED_BODIES = {
    "flatten": ["Flatten"],
    "gap": ["MaskedGlobalAveragePooling1D"],
    "rnn": ["SimpleRNN"],
    "lstm": ["Bidirectional:LSTM"],
    "lstm2": ["Bidirectional:LSTM", "Bidirectional:LSTM"],
    "gru": ["Bidirectional:GRU"],
    "conv": ["Conv1D", "GlobalMaxPooling1D"],
}


def _body(model: keras.Model) -> list[str]:
    names = []
    for layer in model.layers[2:-2]:  # after InputLayer + Embedding, before the two Dense layers
        inner = getattr(layer, "forward_layer", None)
        names.append(f"Bidirectional:{type(inner).__name__}" if inner else type(layer).__name__)
    return names


def test_registry_names_match_the_repository_format() -> None:
    assert tuple(ARCHITECTURES) == ("flatten", "gap", "rnn", "lstm", "lstm2", "gru", "conv")


@pytest.mark.parametrize("name", list(ARCHITECTURES))
@pytest.mark.parametrize("num_outputs", [1, 3])
def test_builds_embedding_body_dense_head(name: str, num_outputs: int) -> None:
    settings = ArchitectureSettings(vocab_size=50, max_length=12, num_outputs=num_outputs)
    model = build_model(name, settings)
    assert type(model.layers[1]).__name__ == "Embedding"
    assert model.layers[1].output_dim == 16 and model.layers[1].input_dim == 50
    assert model.layers[1].mask_zero is (name not in ("flatten", "conv"))
    assert model.inputs[0].shape[-1] == (12 if name == "flatten" else None)
    assert _body(model) == EXPECTED_BODIES[name]
    dense, head = model.layers[-2], model.layers[-1]
    assert dense.activation.__name__ == "relu"
    assert dense.units == ARCHITECTURES[name].dense_units
    assert head.units == num_outputs
    assert head.activation.__name__ == ("sigmoid" if num_outputs == 1 else "softmax")
    probabilities = np.asarray(model(np.arange(24, dtype=np.int32).reshape(2, 12)))
    assert probabilities.shape == (2, num_outputs)
    if num_outputs > 1:
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_sizes_are_overridable() -> None:
    settings = ArchitectureSettings(
        vocab_size=30, max_length=10, num_outputs=1, embedding_dim=4, dense_units=3, rnn_units=5
    )
    model = build_model("lstm", settings)
    assert model.layers[1].output_dim == 4
    assert model.layers[2].forward_layer.units == 5
    assert model.layers[-2].units == 3


def test_compile_uses_the_loss_of_the_output_kind() -> None:
    binary = build_model("gap", ArchitectureSettings(vocab_size=20, max_length=5, num_outputs=1))
    multi = build_model("gap", ArchitectureSettings(vocab_size=20, max_length=5, num_outputs=4))
    compile_model(binary, 1, learning_rate=0.01)
    compile_model(multi, 4, learning_rate=0.01)
    assert binary.loss == "binary_crossentropy" and multi.loss == "sparse_categorical_crossentropy"
    assert float(binary.optimizer.learning_rate) == pytest.approx(0.01)


def test_unknown_architecture_is_rejected() -> None:
    with pytest.raises(ValueError, match="choose from flatten"):
        build_model("transformer", ArchitectureSettings(vocab_size=20, max_length=5, num_outputs=1))
