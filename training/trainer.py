"""Fits one architecture with a fixed seed and records a per-epoch history including wall time."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import keras
import numpy as np

from training.architectures import build_model, compile_model
from training.settings import ArchitectureSettings

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "seconds")


class _EpochTimer(keras.callbacks.Callback):
    """Wall seconds per epoch (fit + validation), which Keras's History does not keep."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._started)


@dataclass(frozen=True)
class TrainedModel:
    model: keras.Model
    # Columns of HISTORY_KEYS, one value per epoch: the content of history.json.
    history: dict[str, list[float]]

    @property
    def epochs(self) -> int:
        return len(self.history["loss"])


def train_architecture(
    name: str,
    settings: ArchitectureSettings,
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
) -> TrainedModel:
    """`data` is (train_ids, train_labels, validation_ids, validation_labels)."""
    train_ids, train_labels, validation_ids, validation_labels = data
    keras.utils.set_random_seed(seed)
    model = build_model(name, settings)
    compile_model(model, settings.num_outputs, learning_rate)
    timer = _EpochTimer()
    fitted = model.fit(
        train_ids,
        train_labels,
        validation_data=(validation_ids, validation_labels),
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        callbacks=[timer],
        # A progress bar for people at a terminal, one line per epoch in logs.
        verbose=1 if sys.stdout.isatty() else 2,
    )
    history = {
        key: [float(value) for value in fitted.history[key]] for key in HISTORY_KEYS if key != "seconds"
    }
    history["seconds"] = timer.seconds
    return TrainedModel(model=model, history=history)
