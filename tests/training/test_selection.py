"""What gets published: the epoch of lowest validation loss, the best of several seeds, never a
degenerate run; every seed's run is kept in runs.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from tokenizers import Tokenizer

from training.cli import train_main
from training.datasets import load_dataset
from training.repository import existing_versions, read_config
from training.tokenizer import encode


def _noisy_csv(path: Path, rows: int = 240, seed: int = 0) -> Path:
    """Texts whose first word agrees with the label 7 times in 10, followed by words drawn at random
    from a small pool: a Flatten model learns the cue, then memorises chance co-occurrences of the
    pool's words with labels, so its validation loss falls, then rises."""
    rng = np.random.default_rng(seed)
    pool = [f"w{i}" for i in range(30)]
    lines = ["text,label"]
    for _ in range(rows):
        label = int(rng.integers(0, 2))
        cue = ("bad", "good")[label if rng.random() < 0.7 else 1 - label]
        lines.append(" ".join([cue, *rng.choice(pool, 5)]) + f",{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _binary_cross_entropy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    p = np.clip(probabilities[:, 0].astype(np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def test_published_weights_are_the_lowest_validation_loss_epoch(tmp_path: Path) -> None:
    data = _noisy_csv(tmp_path / "noisy.csv")
    models = tmp_path / "models"
    argv = ["--models", str(models), "--dataset", str(data), "--arch", "flatten", "--epochs", "30"]
    argv += ["--max-length", "6", "--vocab-size", "100", "--seeds", "2", "--allow-degenerate"]
    assert train_main(argv) == 0

    version_dir = models / "noisy-flatten" / "1"
    config = read_config(version_dir / "config.pbtxt")
    runs = json.loads((version_dir / "runs.json").read_text())
    assert runs["selection"] == "lowest validation loss"
    assert [run["seed"] for run in runs["runs"]] == [42, 43] == list(config.training.seeds)
    for run in runs["runs"]:
        losses = run["history"]["val_loss"]
        assert len(losses) == 30
        assert run["published_epoch"] == int(np.argmin(losses)) + 1
        assert run["validation_loss"] == min(losses)
    # The loss is known to rise: the published epoch is not the last one.
    published = next(run for run in runs["runs"] if run["seed"] == runs["published_seed"])
    assert published["published_epoch"] < 30
    assert published["history"]["val_loss"][-1] > published["validation_loss"]
    # The published seed is the run with the lower validation loss.
    assert published["validation_loss"] == min(run["validation_loss"] for run in runs["runs"])
    assert config.training.seed == runs["published_seed"]
    assert config.training.published_epoch == published["published_epoch"]
    assert config.training.validation_loss == published["validation_loss"]
    assert config.training.test_accuracy == published["test_accuracy"]

    # The exported file holds that epoch's weights: its loss on the validation split is the one
    # recorded for the published epoch, not the last epoch's.
    dataset = load_dataset(str(data), tmp_path, seed=42, validation_fraction=0.1, test_fraction=0.2)
    tokenizer = Tokenizer.from_file(str(models / config.tokenizer.path))
    session = onnxruntime.InferenceSession(str(version_dir / "model.onnx"))
    (probabilities,) = session.run(None, {"input_ids": encode(tokenizer, dataset.validation.texts)})
    loss = _binary_cross_entropy(probabilities, dataset.validation.labels)
    assert loss == pytest.approx(published["validation_loss"], abs=1e-4)


def test_a_degenerate_run_is_refused_unless_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Labels independent of the texts: nothing to learn beyond the majority class."""
    rng = np.random.default_rng(1)
    data = tmp_path / "coin.csv"
    rows = [f"same words every time,{int(rng.random() < 0.7)}" for _ in range(200)]
    data.write_text("text,label\n" + "\n".join(rows) + "\n")
    models = tmp_path / "models"
    argv = ["--models", str(models), "--dataset", str(data), "--arch", "gap", "--epochs", "2"]
    argv += ["--max-length", "4", "--vocab-size", "10"]

    assert train_main(argv) == 1
    error = capsys.readouterr().err
    assert "NOT PUBLISHED: coin-gap is degenerate" in error and "majority class" in error
    assert existing_versions(models / "coin-gap") == []

    assert train_main([*argv, "--allow-degenerate"]) == 0
    runs = json.loads((models / "coin-gap" / "1" / "runs.json").read_text())
    assert [run["degenerate"] for run in runs["runs"]] == [True]
    assert runs["majority_rate"] >= 0.5
