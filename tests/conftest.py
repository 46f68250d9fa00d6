"""Fixtures shared by every test folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.pki import Pki, make_pki

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = (REPO_ROOT / ".." / "shared" / "data").resolve()
TINY_MAX_LENGTH = 40


@pytest.fixture(scope="session")
def tiny_model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model repository (sarcasm-flatten, sarcasm-gru; one quick epoch on 10,000 headlines: few
    enough to train in seconds, enough for both models to tell some headlines sarcastic; published
    whatever accuracy that gives).

    Built by the training CLI as a subprocess, exactly as a user would, so serving tests exercise the
    real contract between training/ and serving/: the files on disk.
    """
    root = tmp_path_factory.mktemp("models")
    command = [
        sys.executable, "-m", "seqserve.cli", "train",
        "--data-dir", str(DATA_DIR), "--models", str(root), "--dataset", "sarcasm",
        "--arch", "flatten,gru", "--epochs", "1", "--limit", "10000",
        "--max-length", str(TINY_MAX_LENGTH), "--vocab-size", "2000", "--allow-degenerate",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    if result.returncode != 0:
        pytest.fail(f"training the tiny repository failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return root


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Throw-away certificates: a CA, a server and a client certificate it signed, and strangers."""
    return make_pki(tmp_path_factory.mktemp("pki"))
