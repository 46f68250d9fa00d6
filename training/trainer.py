"""Fits one architecture with one seed, keeps the weights of its best epoch, and scores them once.

The best epoch is the one with the lowest validation loss. Training runs all its epochs (no early
stop), so the history shows the whole curve, overfitting included; the weights of the best epoch are
kept aside as training goes and put back at the end. Loss rather than accuracy chooses because it is
a proper score of the probabilities the server returns and moves smoothly where accuracy ties.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from training.architectures import build_model, compile_model, sequence_policy
from training.batches import LengthBatches
from training.datasets import Split
from training.progress import JobProgress
from training.settings import ArchitectureSettings

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "seconds")


class _BestEpochWeights(keras.callbacks.Callback):
    """Remembers the weights of the epoch with the lowest val_loss and restores them at the end."""

    def __init__(self) -> None:
        super().__init__()
        self.best_loss = float("inf")
        self.best_epoch = 0  # 1-based
        self._weights: list[np.ndarray] | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        loss = float((logs or {})["val_loss"])
        if loss < self.best_loss:
            self.best_loss, self.best_epoch = loss, epoch + 1
            self._weights = self.model.get_weights()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._weights is not None:
            self.model.set_weights(self._weights)


@dataclass(frozen=True)
class EncodedSplit:
    """A split's ids, padded to max_length, and labels."""

    ids: np.ndarray
    labels: np.ndarray

    @classmethod
    def of(cls, split: Split, ids: np.ndarray) -> EncodedSplit:
        return cls(ids=ids, labels=split.labels)


@dataclass(frozen=True)
class TrainedModel:
    model: keras.Model
    seed: int
    # Columns of HISTORY_KEYS, one value per epoch: the content of history.json.
    history: dict[str, list[float]]
    published_epoch: int  # 1-based, the lowest validation loss
    test_loss: float
    test_accuracy: float

    @property
    def epochs(self) -> int:
        return len(self.history["loss"])

    def at_published_epoch(self, key: str) -> float:
        return self.history[key][self.published_epoch - 1]


def train_architecture(
    name: str,
    settings: ArchitectureSettings,
    splits: tuple[EncodedSplit, EncodedSplit, EncodedSplit],
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    progress: JobProgress,
    run_label: str,
) -> TrainedModel:
    """`splits` is (train, validation, test); test is evaluated once, with the published weights.
    `run_label` names the run in the progress lines, e.g. "sarcasm-lstm seed 43 (2/3)"."""
    train, validation, test = splits
    policy = sequence_policy(name, settings)
    keras.utils.set_random_seed(seed)
    model = build_model(name, settings)
    compile_model(model, settings.num_outputs, learning_rate)

    def batches(split: EncodedSplit, shuffle_seed: int | None) -> LengthBatches:
        return LengthBatches(
            split.ids, split.labels, batch_size=batch_size, policy=policy, shuffle_seed=shuffle_seed
        )

    lines = progress.epoch_lines(name, run_label)
    best = _BestEpochWeights()
    fitted = model.fit(
        batches(train, seed).dataset(),
        validation_data=batches(validation, None).dataset(),
        epochs=epochs,
        callbacks=[lines, best],
        shuffle=False,  # LengthBatches shuffles
        verbose=0,
    )
    history = {key: [float(v) for v in fitted.history[key]] for key in HISTORY_KEYS if key != "seconds"}
    history["seconds"] = lines.seconds
    test_loss, test_accuracy = model.evaluate(batches(test, None).dataset(), verbose=0)
    return TrainedModel(
        model=model,
        seed=seed,
        history=history,
        published_epoch=best.best_epoch,
        test_loss=float(test_loss),
        test_accuracy=float(test_accuracy),
    )
