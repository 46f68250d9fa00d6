"""Shared fixtures: the real data directory and one small model repository trained once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.cli import train_main

DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "sarcasm" / "sarcasm.json").is_file():
        pytest.fail(f"the datasets are expected in {DATA_DIR}")
    return DATA_DIR


@pytest.fixture(scope="session")
def tiny_training() -> list[str]:
    """`seqserve train` flags small enough to train and export all seven architectures in seconds each;
    one epoch on 400 headlines may learn nothing yet, so degenerate models are published too."""
    return [
        "--epochs", "1", "--limit", "400", "--max-length", "24", "--vocab-size", "400", "--allow-degenerate",
    ]  # fmt: skip


@pytest.fixture(scope="session")
def trained_repository(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path, tiny_training: list[str]
) -> Path:
    """Every architecture trained on a sarcasm slice and published, exactly as `seqserve train` does."""
    models = tmp_path_factory.mktemp("models")
    argv = ["--data-dir", str(data_dir), "--models", str(models), "--dataset", "sarcasm", "--arch", "all"]
    assert train_main(argv + tiny_training) == 0
    return models
