"""`seqserve report`: the written report, its plots, and verdicts computed from the curves."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.report import (
    DOES_NOT_HOLD,
    HOLDS,
    MIXED,
    NOT_MEASURED,
    ModelRun,
    claim_conv_matches_lstm,
    claim_gap_plateau,
    claim_gru_vs_lstm,
    claim_lstm_overfits,
    claim_stacked_lstm_smoother,
    report_main,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(architecture: str, val_accuracy: list[float], **columns: list[float]) -> ModelRun:
    epochs = len(val_accuracy)
    history = {
        "accuracy": columns.get("accuracy", [0.9] * epochs),
        "loss": columns.get("loss", [0.3] * epochs),
        "val_accuracy": val_accuracy,
        "val_loss": columns.get("val_loss", [0.4] * epochs),
        "seconds": columns.get("seconds", [1.0] * epochs),
    }
    return ModelRun(
        name=f"sarcasm-{architecture}",
        dataset="sarcasm",
        architecture=architecture,
        version=1,
        parameters=1000,
        epochs=epochs,
        train_examples=100,
        validation_examples=50,
        seed=1,
        validation_name="validation",
        history=history,
        onnx_converter="tf2onnx",
        parity_error=0.0,
    )


def test_run_statistics() -> None:
    run = _run("gap", [0.5, 0.7, 0.6], accuracy=[0.6, 0.8, 0.9], val_loss=[0.6, 0.4, 0.5], seconds=[9, 2, 4])
    assert run.jaggedness() == pytest.approx((0.2 + 0.1) / 2)
    assert run.lowest_validation_loss_epoch == 2
    assert run.overfitting_gap == pytest.approx(0.3)
    assert run.best_validation_accuracy == 0.7
    assert run.epoch_seconds == 3.0  # the first (tracing) epoch is left out


def test_gap_plateau_verdicts() -> None:
    plateau = _run(
        "gap", [0.78, 0.80, 0.805, 0.80, 0.803, 0.802], accuracy=[0.7, 0.8, 0.84, 0.85, 0.86, 0.86]
    )
    assert claim_gap_plateau({"gap": plateau}).verdict == HOLDS
    slow_high = _run("gap", [0.5, 0.6, 0.7, 0.8, 0.9, 0.95], accuracy=[0.6, 0.7, 0.8, 0.9, 0.97, 0.99])
    assert claim_gap_plateau({"gap": slow_high}).verdict == DOES_NOT_HOLD
    assert claim_gap_plateau({}).verdict == NOT_MEASURED


def test_lstm_overfitting_verdicts() -> None:
    overfit = _run(
        "lstm", [0.85, 0.86, 0.84, 0.83], accuracy=[0.85, 0.92, 0.96, 0.98], val_loss=[0.35, 0.33, 0.40, 0.50]
    )
    verdict = claim_lstm_overfits({"lstm": overfit})
    assert verdict.verdict == HOLDS and "51.5% above its minimum" in verdict.evidence
    steady = _run("lstm", [0.8, 0.82, 0.84], accuracy=[0.8, 0.85, 0.9], val_loss=[0.5, 0.45, 0.4])
    assert claim_lstm_overfits({"lstm": steady}).verdict == DOES_NOT_HOLD
    partly = _run("lstm", [0.8, 0.82, 0.84], accuracy=[0.8, 0.9, 0.97], val_loss=[0.5, 0.45, 0.4])
    assert claim_lstm_overfits({"lstm": partly}).verdict == MIXED


def test_smoothness_and_speed_verdicts() -> None:
    jagged = _run("lstm", [0.8, 0.9, 0.8, 0.9], val_loss=[0.5, 0.3, 0.5, 0.3], seconds=[5, 5, 5, 5])
    smooth = _run("lstm2", [0.8, 0.82, 0.83, 0.84], val_loss=[0.5, 0.45, 0.44, 0.43])
    assert claim_stacked_lstm_smoother({"lstm": jagged, "lstm2": smooth}).verdict == HOLDS
    assert claim_stacked_lstm_smoother({"lstm": smooth, "lstm2": jagged}).verdict == DOES_NOT_HOLD
    gru = _run("gru", [0.8, 0.85, 0.86, 0.88], seconds=[4, 4, 4, 4])
    assert claim_gru_vs_lstm({"lstm": jagged, "gru": gru}).verdict == HOLDS  # 2 points lower, faster
    slow_gru = _run("gru", [0.8, 0.8, 0.8, 0.8], seconds=[6, 6, 6, 6])
    assert claim_gru_vs_lstm({"lstm": jagged, "gru": slow_gru}).verdict == DOES_NOT_HOLD
    conv = _run("conv", [0.85, 0.88, 0.89, 0.89], val_loss=[0.45, 0.41, 0.40, 0.41])
    # Accuracy similar and steadier, but the lowest loss is 0.10 higher: mixed.
    assert claim_conv_matches_lstm({"lstm": jagged, "conv": conv}).verdict == MIXED


def test_report_on_a_trained_repository(trained_repository: Path, tmp_path: Path) -> None:
    output = tmp_path / "reports" / "training.md"
    assert report_main(["--models", str(trained_repository), "--output", str(output)]) == 0
    text = output.read_text()
    assert f"`seqserve report --models {trained_repository} --output {output}`" in text
    for architecture in ("flatten", "gap", "rnn", "lstm", "lstm2", "gru", "conv"):
        assert f"| sarcasm-{architecture} | 1 |" in text
    assert text.count("- **") == 6  # five general claims and the sarcasm-only one
    assert "## Thresholds" in text
    assert "epochs / train examples / validation examples / seed = 1 / 300 / 100 / 42." in text
    for metric in ("accuracy", "loss"):
        plot = output.parent / f"sarcasm-{metric}.png"
        assert plot.read_bytes().startswith(PNG_MAGIC) and plot.stat().st_size > 10_000
        assert f"(sarcasm-{metric}.png)" in text


def test_report_without_models_fails(tmp_path: Path) -> None:
    assert report_main(["--models", str(tmp_path), "--output", str(tmp_path / "r.md")]) == 1
    assert not (tmp_path / "r.md").exists()
