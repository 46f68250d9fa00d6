"""Fixtures shared by every test folder: the data directory, and the model repositories trained once per
session (training them is the costliest set-up of the suite)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.pki import Pki, make_pki

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = (REPO_ROOT / ".." / "shared" / "data").resolve()
TINY_MAX_LENGTH = 40


def train(root: Path, *flags: str) -> Path:
    """`seqserve train --models root` with `flags` on the sarcasm data, as a subprocess exactly as a user
    would run it (and so that TensorFlow's process-wide state stays out of the test process)."""
    command = [
        sys.executable, "-m", "seqserve.cli", "train",
        "--data-dir", str(DATA_DIR), "--models", str(root), "--dataset", "sarcasm", *flags,
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        pytest.fail(f"training {root} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return root


@pytest.fixture(scope="session")
def tiny_model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model repository (sarcasm-flatten, sarcasm-gru; one quick epoch on 10,000 headlines: few
    enough to train in seconds, enough for both models to tell some headlines sarcastic; published
    whatever accuracy that gives).

    Built by the training CLI, so serving tests exercise the real contract between training/ and
    serving/: the files on disk.
    """
    return train(
        tmp_path_factory.mktemp("models"),
        "--arch", "flatten,gru", "--epochs", "1", "--limit", "10000",
        "--max-length", str(TINY_MAX_LENGTH), "--vocab-size", "2000", "--allow-degenerate",
    )  # fmt: skip


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Throw-away certificates: a CA, a server and a client certificate it signed, and strangers."""
    return make_pki(tmp_path_factory.mktemp("pki"))


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
def trained_repository(tmp_path_factory: pytest.TempPathFactory, tiny_training: list[str]) -> Path:
    """Every architecture trained on a sarcasm slice and published (for the training tests, and for
    serving tests that need every architecture)."""
    return train(tmp_path_factory.mktemp("models"), "--arch", "all", *tiny_training)
