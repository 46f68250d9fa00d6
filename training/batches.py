"""Batches padded only as far as their model needs, with texts of similar length batched together.

A masked or Conv1D model computes the same outputs, loss and gradients for a batch padded to its
longest text (plus the Conv1D's trailing padding) as for the batch padded to max_length, so padding
less is exact and saves most of the work on short texts. Shuffling "sortishly" (shuffle, sort chunks of
`SORT_CHUNK_BATCHES` batches by length, cut them into batches, shuffle the batches) keeps each batch's
texts close in length, so little padding is left, while every epoch still sees a new random order.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from training.architectures import SequencePolicy

SORT_CHUNK_BATCHES = 50


def real_lengths(ids: np.ndarray, pad_id: int = 0) -> np.ndarray:
    """Tokens per row of right-padded ids."""
    return (ids != pad_id).sum(axis=1)


def padded_length(longest: int, policy: SequencePolicy, max_length: int) -> int:
    """How far a batch whose longest text has `longest` tokens is padded (at least one column)."""
    if not policy.variable_length:
        return max_length
    return max(1, min(max_length, longest + policy.trailing_padding))


class LengthBatches:
    """(ids, labels) batches of one split for one model, as a tf.data pipeline Keras can fit on."""

    def __init__(
        self,
        ids: np.ndarray,
        labels: np.ndarray,
        *,
        batch_size: int,
        policy: SequencePolicy,
        shuffle_seed: int | None,
    ) -> None:
        """`ids` are padded to max_length; `shuffle_seed` None keeps a fixed order (evaluation)."""
        self._ids, self._labels = ids, labels
        self._batch_size = batch_size
        self._policy = policy
        self._lengths = real_lengths(ids)
        self._rng = None if shuffle_seed is None else np.random.default_rng(shuffle_seed)

    def __len__(self) -> int:
        return -(-len(self._ids) // self._batch_size)

    def _order(self) -> list[np.ndarray]:
        size, count = self._batch_size, len(self._ids)
        if self._rng is None:
            # Evaluation: sorted by length, so every batch is as short as it can be.
            order = np.argsort(self._lengths, kind="stable")
            return [order[start : start + size] for start in range(0, count, size)]
        order = self._rng.permutation(count)
        if self._policy.variable_length:
            chunk = size * SORT_CHUNK_BATCHES
            order = np.concatenate(
                [
                    part[np.argsort(self._lengths[part], kind="stable")]
                    for part in np.array_split(order, range(chunk, count, chunk))
                ]
            )
        batches = [order[start : start + size] for start in range(0, count, size)]
        return [batches[i] for i in self._rng.permutation(len(batches))]

    def _batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        max_length = self._ids.shape[1]
        for rows in self._order():
            length = padded_length(int(self._lengths[rows].max()), self._policy, max_length)
            yield self._ids[rows, :length], self._labels[rows]

    def dataset(self) -> tf.data.Dataset:
        """Each pass over the dataset (each epoch) draws a new order; one trace covers every length."""
        signature = (
            tf.TensorSpec([None, None], tf.int32),
            tf.TensorSpec([None], tf.as_dtype(self._labels.dtype)),
        )
        dataset = tf.data.Dataset.from_generator(self._batches, output_signature=signature)
        return dataset.apply(tf.data.experimental.assert_cardinality(len(self))).prefetch(2)
