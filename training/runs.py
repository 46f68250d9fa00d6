"""Every training run in the model repository, gathered per model: the seeds behind the published version.

A version written with runs.json holds every run of the training job that published it; an older
version counts as one run (its history.json, published at its last epoch, no test figures). A model's
runs come from all its versions whose training setup (epochs, max length, train examples) is the
newest version's, so a quick 2-epoch version is never averaged with a full one while the seeds of a
job split over several `seqserve train` invocations add up. A seed found in several versions counts
once, from the newest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqserve.v1 import model_config_pb2
from training.repository import model_versions, read_history, read_runs

History = dict[str, list[float]]


def mean_step(values: list[float]) -> float:
    """How jagged a curve is: the mean absolute change between consecutive epochs (0 for one epoch)."""
    return float(np.mean(np.abs(np.diff(values)))) if len(values) > 1 else 0.0


@dataclass(frozen=True)
class Run:
    """One seed's training run: its curves and the figures at the epoch it would publish."""

    seed: int
    version: int
    published_epoch: int  # 1-based: the epoch of the lowest validation loss (the last, before runs.json)
    validation_accuracy: float
    validation_loss: float
    test_accuracy: float | None  # None for versions written before the test split was kept apart
    test_loss: float | None
    degenerate: bool
    majority_rate: float  # the validation split's majority-class rate; NaN before runs.json
    history: History

    @property
    def epoch_seconds(self) -> float:
        """Mean over epochs after the first (which also traces the graph), when there are any."""
        seconds = self.history["seconds"]
        return float(np.mean(seconds[1:] if len(seconds) > 1 else seconds))

    def final(self, key: str) -> float:
        return self.history[key][-1]

    def jaggedness(self, key: str) -> float:
        return mean_step(self.history[key])


@dataclass(frozen=True)
class Model:
    """A model's newest version and every run of its training setup, one per seed."""

    name: str
    dataset: str
    architecture: str
    version: int
    parameters: int
    epochs: int
    max_length: int
    train_examples: int
    validation_examples: int
    test_examples: int
    onnx_converter: str
    parity_error: float
    published_seed: int
    runs: tuple[Run, ...]  # ascending seed
    excluded_versions: tuple[int, ...]  # versions of another training setup

    @property
    def published(self) -> Run:
        """The run whose weights the newest version serves."""
        return next(
            run for run in self.runs if run.version == self.version and run.seed == self.published_seed
        )

    @property
    def counted(self) -> tuple[Run, ...]:
        """The runs behind accuracy and loss figures: degenerate runs are left out, unless all are."""
        learnt = tuple(run for run in self.runs if not run.degenerate)
        return learnt or self.runs

    @property
    def versions(self) -> tuple[int, ...]:
        return tuple(sorted({run.version for run in self.runs}))


def _version_runs(version_dir: Path, config: model_config_pb2.ModelConfig) -> tuple[int, list[Run]]:
    """(published seed, runs) of one version, from runs.json or, before it existed, history.json."""
    recorded = read_runs(version_dir)
    if recorded is None:
        history = read_history(version_dir)
        legacy = Run(
            seed=config.training.seed,
            version=config.version,
            published_epoch=len(history["val_loss"]),
            validation_accuracy=history["val_accuracy"][-1],
            validation_loss=history["val_loss"][-1],
            test_accuracy=None,
            test_loss=None,
            degenerate=False,
            majority_rate=math.nan,
            history=history,
        )
        return legacy.seed, [legacy]
    runs = [
        Run(
            seed=run["seed"],
            version=config.version,
            published_epoch=run["published_epoch"],
            validation_accuracy=run["validation_accuracy"],
            validation_loss=run["validation_loss"],
            test_accuracy=run["test_accuracy"],
            test_loss=run["test_loss"],
            degenerate=run["degenerate"],
            majority_rate=recorded["majority_rate"],
            history=run["history"],
        )
        for run in recorded["runs"]
    ]
    return recorded["published_seed"], runs


def _setup(config: model_config_pb2.ModelConfig) -> tuple[int, int, int]:
    return config.training.epochs, config.max_length, config.training.train_examples


def load_models(models: Path) -> dict[str, dict[str, Model]]:
    """dataset -> architecture -> the model with every run of its newest version's training setup."""
    loaded: dict[str, dict[str, Model]] = {}
    for versions in model_versions(models):
        newest = versions[-1][1]
        matching = [(path, config) for path, config in reversed(versions) if _setup(config) == _setup(newest)]
        gathered = [_version_runs(path, config) for path, config in matching]  # newest first
        by_seed: dict[int, Run] = {}
        for _, runs in gathered:
            for run in runs:
                by_seed.setdefault(run.seed, run)
        excluded = [config.version for _, config in versions if _setup(config) != _setup(newest)]
        model = Model(
            name=newest.name,
            dataset=newest.dataset,
            architecture=newest.architecture,
            version=newest.version,
            parameters=newest.parameter_count,
            epochs=newest.training.epochs,
            max_length=newest.max_length,
            train_examples=newest.training.train_examples,
            validation_examples=newest.training.validation_examples,
            test_examples=newest.training.test_examples,
            onnx_converter=newest.export.onnx_converter,
            parity_error=newest.export.parity_max_abs_error,
            published_seed=gathered[0][0],
            runs=tuple(by_seed[seed] for seed in sorted(by_seed)),
            excluded_versions=tuple(excluded),
        )
        loaded.setdefault(model.dataset, {})[model.architecture] = model
    return loaded
