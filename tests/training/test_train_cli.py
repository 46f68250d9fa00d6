"""`seqserve train` flag handling and error reporting."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.cli import train_main
from training.repository import read_config


def test_unknown_architecture_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--models", str(tmp_path), "--arch", "flatten,transformer"])
    assert exit_info.value.code == 2
    assert "unknown architecture(s) transformer" in capsys.readouterr().err


def test_missing_data_is_reported_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train_main(["--data-dir", str(tmp_path), "--models", str(tmp_path / "m"), "--arch", "gap"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("seqserve train: error: dataset file not found") and "sarcasm.json" in error
    assert not (tmp_path / "m").exists()


def test_a_user_csv_trains_under_its_file_name(tmp_path: Path) -> None:
    data = tmp_path / "Support Tickets.csv"
    rows = [f"ticket {i} about {topic},{topic}" for i in range(30) for topic in ("billing", "login")]
    data.write_text("text,label\n" + "\n".join(rows) + "\n")
    models = tmp_path / "models"
    argv = ["--models", str(models), "--dataset", str(data), "--arch", "flatten", "--epochs", "1"]
    argv.append("--allow-degenerate")
    assert train_main([*argv, "--max-length", "6", "--vocab-size", "40"]) == 0
    config = read_config(models / "support_tickets-flatten" / "1" / "config.pbtxt")
    assert list(config.labels) == ["billing", "login"]
    assert config.tokenizer.path == "tokenizers/support_tickets/tokenizer.json"
    # The tokenizer pads to 6 tokens; asking for another length must not silently retrain it.
    assert train_main([*argv, "--max-length", "9"]) == 1
