"""`seqserve train` and `seqserve report` (whose implementation lives in training.report)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# Keeps most of TensorFlow's C++ start-up warnings out of the training log; must precede its import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from seqserve.numbers import open_fraction, positive_int
from training.architectures import ARCHITECTURES
from training.datasets import CUSTOM_TEST_FRACTION, DatasetError, load_dataset
from training.export import ExportParityError
from training.pipeline import train_and_publish
from training.report import report_main
from training.settings import CUSTOM_DATASET_DEFAULTS, DATASET_DEFAULTS, TrainSettings, dataset_defaults
from training.tokenizer import TokenizerMismatchError, stored_max_length

__all__ = ["report_main", "train_main"]


def _architectures(value: str) -> tuple[str, ...]:
    names = tuple(ARCHITECTURES) if value == "all" else tuple(name.strip() for name in value.split(","))
    unknown = [name for name in names if name not in ARCHITECTURES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown architecture(s) {', '.join(unknown)}; "
            f"use 'all' or a comma list of {','.join(ARCHITECTURES)}"
        )
    return names


def _per_dataset(field: str) -> str:
    """Help text listing a default per dataset, e.g. "sarcasm 10, imdb 5, other files 10"."""
    values = [f"{name} {getattr(defaults, field)}" for name, defaults in DATASET_DEFAULTS.items()]
    return ", ".join([*values, f"other files {getattr(CUSTOM_DATASET_DEFAULTS, field)}"])


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seqserve train",
        description="Train text classifiers and publish them as new versions in a model repository.",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=Path("../shared/data"), help="holds sarcasm/ and imdb/"
    )
    parser.add_argument("--models", type=Path, default=Path("models"), help="model repository root")
    parser.add_argument(
        "--dataset", default="sarcasm", help="sarcasm, imdb, or a .csv/.jsonl file with columns text,label"
    )
    parser.add_argument(
        "--arch", type=_architectures, default=tuple(ARCHITECTURES), help="'all' or e.g. flatten,gru"
    )
    parser.add_argument("--epochs", type=positive_int, help=f"default: {_per_dataset('epochs')}")
    parser.add_argument(
        "--limit", type=positive_int, help="use only the first N (shuffled) examples, for quick runs"
    )
    parser.add_argument("--seed", type=int, default=42, help="the first model seed (weights, batch order)")
    parser.add_argument(
        "--split-seed",
        type=int,
        default=42,
        help="seeds the train/validation split; keep it when seeds are trained in several runs",
    )
    parser.add_argument(
        "--seeds",
        type=positive_int,
        default=1,
        help="runs per architecture, with seeds SEED, SEED+1, ...; the best on validation is published",
    )
    parser.add_argument(
        "--validation-fraction",
        type=open_fraction,
        help="share of the training data held out for validation (stratified); "
        f"default: {_per_dataset('validation_fraction')}",
    )
    parser.add_argument(
        "--test-fraction",
        type=open_fraction,
        default=CUSTOM_TEST_FRACTION,
        help="share of a .csv/.jsonl file held out as its test split (sarcasm and imdb keep their own)",
    )
    parser.add_argument(
        "--allow-degenerate",
        action="store_true",
        help="publish a model even when it does no better than always answering the majority class",
    )
    parser.add_argument(
        "--max-length",
        type=positive_int,
        help=f"tokens per text; default: the existing tokenizer's, else {_per_dataset('max_length')}",
    )
    parser.add_argument(
        "--vocab-size",
        type=positive_int,
        help=f"including [PAD] and [UNK]; default: {_per_dataset('vocab_size')}",
    )
    parser.add_argument("--batch-size", type=positive_int, default=32)
    return parser


def train_main(argv: list[str]) -> int:
    args = train_parser().parse_args(argv)
    try:
        defaults = dataset_defaults(args.dataset)
        validation_fraction = args.validation_fraction or defaults.validation_fraction
        dataset = load_dataset(
            args.dataset, args.data_dir, args.split_seed, validation_fraction, args.test_fraction
        ).limited(args.limit)
        settings = TrainSettings(
            data_dir=args.data_dir,
            models=args.models,
            dataset=dataset.name,
            architectures=args.arch,
            epochs=args.epochs or defaults.epochs,
            max_length=args.max_length or stored_max_length(args.models, dataset.name) or defaults.max_length,
            truncation_side=defaults.truncation_side,
            limit=args.limit,
            seeds=tuple(range(args.seed, args.seed + args.seeds)),
            split_seed=args.split_seed,
            allow_degenerate=args.allow_degenerate,
            vocab_size=args.vocab_size or defaults.vocab_size,
            batch_size=args.batch_size,
        )
        result = train_and_publish(settings, dataset, report=lambda line: print(line, flush=True))
    except (DatasetError, TokenizerMismatchError, ExportParityError) as error:
        print(f"seqserve train: error: {error}", file=sys.stderr)
        return 1
    for refused in result.refused:
        print(f"seqserve train: {refused.message()}", file=sys.stderr)
    return 1 if result.refused else 0
