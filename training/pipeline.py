"""One training run: dataset -> shared tokenizer -> every architecture trained, exported, published."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from seqserve.v1 import model_config_pb2
from training.datasets import TextDataset
from training.export import ExportResult, export_model
from training.repository import model_name, staged_version
from training.settings import ArchitectureSettings, TrainSettings
from training.tokenizer import StoredTokenizer, encode, load_or_build
from training.trainer import TrainedModel, train_architecture


@dataclass(frozen=True)
class PublishedVersion:
    name: str
    version: int
    directory: Path
    config: model_config_pb2.ModelConfig


def build_config(
    dataset: TextDataset,
    architecture: str,
    tokenizer: StoredTokenizer,
    models: Path,
    trained: TrainedModel,
    exported: ExportResult,
    settings: TrainSettings,
) -> model_config_pb2.ModelConfig:
    """Everything config.pbtxt records except `version`, which publishing assigns."""
    history = trained.history
    config = model_config_pb2.ModelConfig(
        name=model_name(dataset.name, architecture),
        architecture=architecture,
        dataset=dataset.name,
        labels=list(dataset.labels),
        max_length=tokenizer.max_length,
        output_kind=(
            model_config_pb2.OUTPUT_KIND_SIGMOID
            if dataset.is_binary
            else model_config_pb2.OUTPUT_KIND_SOFTMAX
        ),
        tokenizer=model_config_pb2.TokenizerRef(
            path=tokenizer.path.relative_to(models).as_posix(), sha256=tokenizer.sha256
        ),
        parameter_count=trained.model.count_params(),
        training=model_config_pb2.TrainingSummary(
            epochs=trained.epochs,
            train_examples=len(dataset.train_texts),
            validation_examples=len(dataset.validation_texts),
            train_accuracy=history["accuracy"][-1],
            validation_accuracy=history["val_accuracy"][-1],
            validation_loss=history["val_loss"][-1],
            best_validation_accuracy=max(history["val_accuracy"]),
            mean_epoch_seconds=float(np.mean(history["seconds"])),
            trained_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            seed=settings.seed,
        ),
        export=exported.summary(),
    )
    return config


def train_and_publish(
    settings: TrainSettings, dataset: TextDataset, report: Callable[[str], None] = print
) -> list[PublishedVersion]:
    """Trains every architecture of `settings` on `dataset` and publishes one new version of each."""
    tokenizer = load_or_build(
        settings.models,
        dataset.name,
        dataset.train_texts,
        settings.vocab_size,
        settings.max_length,
        settings.truncation_side,
    )
    report(
        f"tokenizer {tokenizer.path} ({'reused' if tokenizer.reused else 'built'}): "
        f"vocabulary {tokenizer.vocab_size}, max_length {tokenizer.max_length}"
    )
    train_ids = encode(tokenizer.tokenizer, dataset.train_texts)
    validation_ids = encode(tokenizer.tokenizer, dataset.validation_texts)
    data = (train_ids, dataset.train_labels, validation_ids, dataset.validation_labels)
    parity_ids = validation_ids[: settings.parity_examples]
    layer_settings = ArchitectureSettings(
        vocab_size=tokenizer.vocab_size,
        max_length=tokenizer.max_length,
        num_outputs=1 if dataset.is_binary else len(dataset.labels),
    )
    published = []
    for architecture in settings.architectures:
        name = model_name(dataset.name, architecture)
        report(
            f"== {name}: {len(dataset.train_texts)} train / {len(dataset.validation_texts)} "
            f"{dataset.validation_name} examples, {settings.epochs} epoch(s)"
        )
        trained = train_architecture(
            architecture,
            layer_settings,
            data,
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            seed=settings.seed,
        )
        with staged_version(settings.models, name) as staged:
            exported = export_model(
                trained.model,
                staged.directory,
                max_length=tokenizer.max_length,
                parity_ids=parity_ids,
                tolerance=settings.parity_tolerance,
                opset=settings.onnx_opset,
            )
            staged.write_history(trained.history)
            config = build_config(
                dataset, architecture, tokenizer, settings.models, trained, exported, settings
            )
            version = staged.publish(config)
        directory = settings.models / name / str(version)
        report(
            f"   published {directory}: {dataset.validation_name} accuracy "
            f"{config.training.validation_accuracy:.4f} "
            f"(best {config.training.best_validation_accuracy:.4f}), "
            f"{config.training.mean_epoch_seconds:.1f} s/epoch, ONNX via {exported.onnx_converter}, "
            f"parity error {exported.parity_max_abs_error:.2g}"
        )
        published.append(PublishedVersion(name=name, version=version, directory=directory, config=config))
    return published
