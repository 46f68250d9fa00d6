"""The model repository as written by `seqserve train`: layout, config round-trip, versions, reuse."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from google.protobuf import text_format

from seqserve.v1 import model_config_pb2
from training import repository
from training.architectures import ARCHITECTURES
from training.cli import train_main
from training.repository import existing_versions, read_config, staged_version

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"


def test_layout_matches_the_repository_format(trained_repository: Path) -> None:
    tokenizer = trained_repository / "tokenizers" / "sarcasm" / "tokenizer.json"
    assert tokenizer.is_file()
    for architecture in ARCHITECTURES:
        version_dir = trained_repository / f"sarcasm-{architecture}" / "1"
        assert (version_dir / "model.onnx").is_file()
        assert (version_dir / "saved_model" / "saved_model.pb").is_file()
        assert (version_dir / "config.pbtxt").is_file()
        history = json.loads((version_dir / "history.json").read_text())
        assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"}
        assert all(len(values) == 1 for values in history.values())
        assert all(0 <= value <= 1 for value in history["accuracy"] + history["val_accuracy"])


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_config_is_complete_and_round_trips(trained_repository: Path, architecture: str) -> None:
    version_dir = trained_repository / f"sarcasm-{architecture}" / "1"
    text = (version_dir / "config.pbtxt").read_text()
    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert text_format.MessageToString(config) == text
    assert config.name == f"sarcasm-{architecture}" and config.version == 1
    assert config.architecture == architecture and config.dataset == "sarcasm"
    assert list(config.labels) == ["not_sarcastic", "sarcastic"]
    assert config.max_length == 24
    assert config.output_kind == model_config_pb2.OUTPUT_KIND_SIGMOID
    tokenizer_file = trained_repository / config.tokenizer.path
    assert config.tokenizer.path == "tokenizers/sarcasm/tokenizer.json"
    assert config.tokenizer.sha256 == hashlib.sha256(tokenizer_file.read_bytes()).hexdigest()
    assert config.parameter_count > 400 * 16  # at least the embedding table
    history = json.loads((version_dir / "history.json").read_text())
    training = config.training
    # --limit 400 over 18,000 / 2,000 / 6,709 headlines.
    counts = (training.epochs, training.train_examples, training.validation_examples, training.test_examples)
    assert counts == (1, 270, 30, 100)
    assert training.published_epoch == 1
    assert training.train_accuracy == history["accuracy"][0]
    assert training.validation_accuracy == history["val_accuracy"][0]
    assert training.validation_loss == history["val_loss"][0]
    assert training.best_validation_accuracy == max(history["val_accuracy"])
    assert 0 <= training.test_accuracy <= 1 and training.test_loss > 0
    assert list(training.seeds) == [42] and training.split_seed == 42
    assert training.validation_fraction == pytest.approx(0.1)
    assert training.mean_epoch_seconds == pytest.approx(sum(history["seconds"]) / len(history["seconds"]))
    assert training.trained_at.endswith("Z") and training.seed == 42
    export = config.export
    assert (export.onnx_file, export.saved_model_dir) == ("model.onnx", "saved_model")
    assert (export.input_name, export.output_name) == ("input_ids", "probabilities")


def test_new_run_adds_a_version_and_reuses_the_tokenizer(
    tmp_path: Path, data_dir: Path, trained_repository: Path, tiny_training: list[str]
) -> None:
    models = tmp_path / "models"
    argv = ["--data-dir", str(data_dir), "--models", str(models), "--dataset", "sarcasm", "--arch", "flatten"]
    assert train_main(argv + tiny_training) == 0
    tokenizer = models / "tokenizers" / "sarcasm" / "tokenizer.json"
    first_bytes, first_mtime = tokenizer.read_bytes(), tokenizer.stat().st_mtime_ns
    version_one = (models / "sarcasm-flatten" / "1" / "config.pbtxt").read_text()
    # Another seed: same tokenizer file regardless, and max_length defaults to the stored one.
    assert train_main([*argv, "--epochs", "1", "--limit", "300", "--seed", "7", "--allow-degenerate"]) == 0
    assert existing_versions(models / "sarcasm-flatten") == [1, 2]
    assert (models / "sarcasm-flatten" / "1" / "config.pbtxt").read_text() == version_one
    second = read_config(models / "sarcasm-flatten" / "2" / "config.pbtxt")
    assert second.version == 2 and second.training.seed == 7 and second.max_length == 24
    assert tokenizer.read_bytes() == first_bytes and tokenizer.stat().st_mtime_ns == first_mtime
    # Same data, seed and settings as the session repository: the same tokenizer file.
    assert first_bytes == (trained_repository / "tokenizers" / "sarcasm" / "tokenizer.json").read_bytes()


def test_staging_is_invisible_and_removed_on_failure(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), staged_version(tmp_path, "demo-flatten") as staged:
        (staged.directory / "model.onnx").write_bytes(b"partial")
        assert staged.directory.name.startswith(".")
        assert existing_versions(tmp_path / "demo-flatten") == []
        raise RuntimeError("export failed")
    assert list((tmp_path / "demo-flatten").iterdir()) == []


def test_publish_skips_a_version_taken_meanwhile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "demo-gap" / "1").mkdir(parents=True)
    listed = existing_versions
    calls = []

    def listing_before_a_concurrent_publish(model_dir: Path) -> list[int]:
        calls.append(model_dir)
        if len(calls) == 1:
            # Another run publishes version 2 right after this run listed the versions.
            (model_dir / "2").mkdir()
            (model_dir / "2" / "config.pbtxt").write_text('name: "demo-gap"\n')
            return [1]
        return listed(model_dir)

    with staged_version(tmp_path, "demo-gap") as staged:
        (staged.directory / "model.onnx").write_bytes(b"onnx")
        monkeypatch.setattr(repository, "existing_versions", listing_before_a_concurrent_publish)
        version = staged.publish(model_config_pb2.ModelConfig(name="demo-gap"))
        monkeypatch.undo()
    assert len(calls) == 2
    assert version == 3
    assert read_config(tmp_path / "demo-gap" / "3" / "config.pbtxt").version == 3
    assert (tmp_path / "demo-gap" / "2" / "config.pbtxt").read_text() == 'name: "demo-gap"\n'
    assert existing_versions(tmp_path / "demo-gap") == [1, 2, 3]
