"""One training job: dataset -> shared tokenizer -> every architecture x seed trained -> the best run of
each architecture exported and published.

Every run is chosen on validation only: its epoch (the lowest validation loss) and, among the seeds,
the run to publish (again the lowest validation loss). The test split is scored once per run, with the
weights that run would publish, for the report. A run whose validation accuracy is within
DEGENERATE_MARGIN of always answering the majority class has learnt nothing and is not published.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from seqserve.v1 import model_config_pb2
from training.architectures import sequence_policy
from training.datasets import TextDataset
from training.export import ExportResult, export_model
from training.progress import JobProgress
from training.repository import HISTORY_FILE, RUNS_FILE, model_name, staged_version
from training.settings import DEGENERATE_MARGIN, ArchitectureSettings, TrainSettings
from training.tokenizer import StoredTokenizer, encode, load_or_build
from training.trainer import EncodedSplit, TrainedModel, train_architecture

SELECTION = "lowest validation loss"


@dataclass(frozen=True)
class PublishedVersion:
    name: str
    version: int
    directory: Path
    config: model_config_pb2.ModelConfig


@dataclass(frozen=True)
class RefusedModel:
    """An architecture none of whose runs learnt more than the majority class."""

    name: str
    majority_rate: float
    validation_accuracies: tuple[float, ...]

    def message(self) -> str:
        accuracies = ", ".join(f"{accuracy:.1%}" for accuracy in self.validation_accuracies)
        return (
            f"NOT PUBLISHED: {self.name} is degenerate: validation accuracy {accuracies} is within "
            f"{DEGENERATE_MARGIN:.0%} of always answering the majority class ({self.majority_rate:.1%}); "
            "pass --allow-degenerate to publish it anyway"
        )


@dataclass(frozen=True)
class JobResult:
    published: list[PublishedVersion]
    refused: list[RefusedModel]


def is_degenerate(validation_accuracy: float, majority_rate: float) -> bool:
    return validation_accuracy <= majority_rate + DEGENERATE_MARGIN


def run_record(run: TrainedModel, majority_rate: float) -> dict:
    """One entry of runs.json."""
    validation_accuracy = run.at_published_epoch("val_accuracy")
    return {
        "seed": run.seed,
        "published_epoch": run.published_epoch,
        "validation_accuracy": validation_accuracy,
        "validation_loss": run.at_published_epoch("val_loss"),
        "test_accuracy": run.test_accuracy,
        "test_loss": run.test_loss,
        "degenerate": is_degenerate(validation_accuracy, majority_rate),
        "history": run.history,
    }


def build_config(
    dataset: TextDataset,
    architecture: str,
    tokenizer: StoredTokenizer,
    layer_settings: ArchitectureSettings,
    trained: TrainedModel,
    exported: ExportResult,
    settings: TrainSettings,
) -> model_config_pb2.ModelConfig:
    """Everything config.pbtxt records except `version`, which publishing assigns."""
    history = trained.history
    policy = sequence_policy(architecture, layer_settings)
    return model_config_pb2.ModelConfig(
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
            path=tokenizer.path.relative_to(settings.models).as_posix(), sha256=tokenizer.sha256
        ),
        parameter_count=trained.model.count_params(),
        training=model_config_pb2.TrainingSummary(
            epochs=trained.epochs,
            train_examples=len(dataset.train),
            validation_examples=len(dataset.validation),
            train_accuracy=trained.at_published_epoch("accuracy"),
            validation_accuracy=trained.at_published_epoch("val_accuracy"),
            validation_loss=trained.at_published_epoch("val_loss"),
            best_validation_accuracy=max(history["val_accuracy"]),
            mean_epoch_seconds=float(np.mean(history["seconds"])),
            trained_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            seed=trained.seed,
            published_epoch=trained.published_epoch,
            test_examples=len(dataset.test),
            test_accuracy=trained.test_accuracy,
            test_loss=trained.test_loss,
            seeds=list(settings.seeds),
            split_seed=dataset.split_seed,
            validation_fraction=dataset.validation_fraction,
        ),
        export=exported.summary(),
        sequence=policy.config(),
    )


def train_and_publish(
    settings: TrainSettings, dataset: TextDataset, report: Callable[[str], None] = print
) -> JobResult:
    """Trains every architecture of `settings` once per seed on `dataset` and publishes one new version
    of each: its best run on validation, unless every run is degenerate."""
    tokenizer = load_or_build(
        settings.models,
        dataset.name,
        dataset.train.texts,
        settings.vocab_size,
        settings.max_length,
        settings.truncation_side,
    )
    report(
        f"tokenizer {tokenizer.path} ({'reused' if tokenizer.reused else 'built'}): "
        f"vocabulary {tokenizer.vocab_size}, max_length {tokenizer.max_length}"
    )
    splits = tuple(
        EncodedSplit.of(split, encode(tokenizer.tokenizer, split.texts))
        for split in (dataset.train, dataset.validation, dataset.test)
    )
    parity_ids = splits[1].ids[: settings.parity_examples]
    majority_rate = dataset.validation.majority_rate()
    layer_settings = ArchitectureSettings(
        vocab_size=tokenizer.vocab_size,
        max_length=tokenizer.max_length,
        num_outputs=1 if dataset.is_binary else len(dataset.labels),
    )
    report(
        f"{dataset.name}: {len(dataset.train)} train / {len(dataset.validation)} validation / "
        f"{len(dataset.test)} test examples; {len(settings.architectures)} architecture(s) x "
        f"{len(settings.seeds)} seed(s) x {settings.epochs} epoch(s)"
    )
    progress = JobProgress(settings.architectures, len(settings.seeds), settings.epochs)
    result = JobResult(published=[], refused=[])
    for architecture in settings.architectures:
        name = model_name(dataset.name, architecture)
        runs = [
            train_architecture(
                architecture,
                layer_settings,
                splits,
                epochs=settings.epochs,
                batch_size=settings.batch_size,
                learning_rate=settings.learning_rate,
                seed=seed,
                progress=progress,
                run_label=f"{name} seed {seed} ({index}/{len(settings.seeds)})",
            )
            for index, seed in enumerate(settings.seeds, start=1)
        ]
        records = [run_record(run, majority_rate) for run in runs]
        candidates = [
            run for run, record in zip(runs, records, strict=True)
            if settings.allow_degenerate or not record["degenerate"]
        ]  # fmt: skip
        if not candidates:
            refused = RefusedModel(
                name, majority_rate, tuple(record["validation_accuracy"] for record in records)
            )
            progress.write(refused.message())
            result.refused.append(refused)
            continue
        best = min(candidates, key=lambda run: run.at_published_epoch("val_loss"))
        runs_file = {
            "selection": SELECTION,
            "majority_rate": majority_rate,
            "published_seed": best.seed,
            "runs": records,
        }
        result.published.append(
            _publish(settings, dataset, architecture, tokenizer, layer_settings, best, parity_ids, runs_file)
        )
        config = result.published[-1].config
        progress.write(
            f"   published {result.published[-1].directory}: seed {best.seed}, epoch "
            f"{best.published_epoch}/{best.epochs} ({SELECTION}): validation accuracy "
            f"{config.training.validation_accuracy:.4f}, test accuracy {best.test_accuracy:.4f}; "
            f"{config.training.mean_epoch_seconds:.1f} s/epoch, ONNX via {config.export.onnx_converter}, "
            f"parity error {config.export.parity_max_abs_error:.2g}"
        )
    return result


def _publish(
    settings: TrainSettings,
    dataset: TextDataset,
    architecture: str,
    tokenizer: StoredTokenizer,
    layer_settings: ArchitectureSettings,
    trained: TrainedModel,
    parity_ids: np.ndarray,
    runs_file: dict,
) -> PublishedVersion:
    name = model_name(dataset.name, architecture)
    with staged_version(settings.models, name) as staged:
        exported = export_model(
            trained.model,
            staged.directory,
            max_length=tokenizer.max_length,
            policy=sequence_policy(architecture, layer_settings),
            parity_ids=parity_ids,
            tolerance=settings.parity_tolerance,
            opset=settings.onnx_opset,
        )
        staged.write_json(HISTORY_FILE, trained.history)
        staged.write_json(RUNS_FILE, runs_file)
        config = build_config(dataset, architecture, tokenizer, layer_settings, trained, exported, settings)
        version = staged.publish(config)
    return PublishedVersion(name, version, settings.models / name / str(version), config)
