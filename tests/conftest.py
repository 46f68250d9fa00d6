"""Fixtures shared by every test folder: the data directory, and the model repositories trained once per
run (training them is the costliest set-up of the suite): by whichever pytest-xdist worker asks first,
while the others wait for it and then read the same files."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.pki import Pki, make_pki
from tests.scheduling import (
    UNITS_ENV,
    AloneLock,
    UnitScheduling,
    is_alone,
    order_and_write_units,
    run_directory,
    worker,
)

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


def pytest_configure(config: pytest.Config) -> None:
    """pytest-xdist (tests/scheduling.py): the controller names the file of the tests' units for its
    workers; each worker opens the run's AloneLock."""
    if worker():
        config.stash[ALONE_LOCK] = AloneLock(run_directory(Path(config.getoption("basetemp"))))
    elif config.getvalue("dist") != "no":
        os.environ[UNITS_ENV] = str(Path(tempfile.mkdtemp(prefix="seqserve-test-units-")) / "units.json")


def pytest_unconfigure(config: pytest.Config) -> None:
    if not worker() and UNITS_ENV in os.environ:
        shutil.rmtree(Path(os.environ.pop(UNITS_ENV)).parent, ignore_errors=True)


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> UnitScheduling | None:
    """`-n N` (whose --dist is load unless told otherwise) schedules by tests/scheduling.py's units."""
    return UnitScheduling(config, log) if config.getvalue("dist") == "load" else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if worker():
        order_and_write_units(items)


ALONE_LOCK = pytest.StashKey[AloneLock]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Under xdist, a test marked `alone` runs while no other worker runs one (tests/scheduling.py)."""
    lock = item.config.stash.get(ALONE_LOCK, None)
    if lock is None:
        return (yield)
    lock.enter(is_alone(item))
    try:
        return (yield)
    finally:
        lock.leave(is_alone(nextitem))


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """`name` in the run's directory, made by `build(path)` once per run, whichever worker asks first; a
    worker that finds it being made waits for it. A build that failed leaves no mark, so the next worker
    to ask builds it again (and fails the same way, with its own message)."""
    root = run_directory(tmp_path_factory.getbasetemp()) / name
    done = root.with_name(f"{name}.built")
    with root.with_name(f"{name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released as the file closes
        if not done.exists():
            shutil.rmtree(root, ignore_errors=True)
            build(root)
            done.touch()
    return root


@pytest.fixture(scope="session")
def tiny_model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model repository (sarcasm-flatten, sarcasm-gru; one quick epoch on 10,000 headlines: few
    enough to train in seconds, enough for both models to tell some headlines sarcastic; published
    whatever accuracy that gives).

    Built by the training CLI, so serving tests exercise the real contract between training/ and
    serving/: the files on disk.
    """
    return built_once(tmp_path_factory, "tiny-models", lambda root: train(
        root,
        "--arch", "flatten,gru", "--epochs", "1", "--limit", "10000",
        "--max-length", str(TINY_MAX_LENGTH), "--vocab-size", "2000", "--allow-degenerate",
    ))  # fmt: skip


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
    return built_once(
        tmp_path_factory, "trained-models", lambda root: train(root, "--arch", "all", *tiny_training)
    )
