"""`seqserve report`: every run in the repository, the written report, its plots, and verdicts over seeds."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from seqserve.v1 import model_config_pb2
from seqserve.verdicts import Verdict
from training.claims import (
    NOT_ENOUGH_SEEDS,
    claim_conv_matches_lstm,
    claim_flatten_conv_fast,
    claim_gap_plateau,
    claim_gru_vs_lstm,
    claim_lstm_overfits,
    claim_stacked_lstm_smoother,
)
from training.report import report_main
from training.repository import CONFIG_FILE, HISTORY_FILE, RUNS_FILE, write_config
from training.runs import Model, Run, load_models
from training.statistics import PERCENT, Spread

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SEEDS = (42, 43, 44)


def _run(
    seed: int,
    val_accuracy: list[float],
    *,
    version: int = 1,
    test_accuracy: float | None = 0.85,
    test_loss: float | None = 0.35,
    degenerate: bool = False,
    **columns: list[float],
) -> Run:
    epochs = len(val_accuracy)
    history = {
        "loss": columns.get("loss", [0.3] * epochs),
        "accuracy": columns.get("accuracy", [0.9] * epochs),
        "val_loss": columns.get("val_loss", [0.4] * epochs),
        "val_accuracy": val_accuracy,
        "seconds": columns.get("seconds", [1.0] * epochs),
    }
    published = int(np.argmin(history["val_loss"]))
    return Run(
        seed=seed,
        version=version,
        published_epoch=published + 1,
        validation_accuracy=val_accuracy[published],
        validation_loss=history["val_loss"][published],
        test_accuracy=test_accuracy,
        test_loss=test_loss,
        degenerate=degenerate,
        majority_rate=0.56,
        history=history,
    )


def _model(architecture: str, runs: list[Run]) -> Model:
    return Model(
        name=f"sarcasm-{architecture}",
        dataset="sarcasm",
        architecture=architecture,
        version=1,
        parameters=1000,
        epochs=len(runs[0].history["val_accuracy"]),
        max_length=20,
        train_examples=100,
        validation_examples=20,
        test_examples=30,
        onnx_converter="tf2onnx",
        parity_error=0.0,
        published_seed=runs[0].seed,
        runs=tuple(runs),
        excluded_versions=(),
    )


def _seeded(architecture: str, make: Callable[[int], Run]) -> Model:
    """A model whose i-th seed's run is make(i): the variation between seeds is the caller's."""
    return _model(architecture, [make(index) for index in range(len(SEEDS))])


def _timed(architecture: str, seconds: list[float], test_accuracies: list[float]) -> Model:
    return _model(
        architecture,
        [
            _run(seed, [0.8, 0.8, 0.8], seconds=[s] * 3, test_accuracy=accuracy)
            for seed, s, accuracy in zip(SEEDS[: len(seconds)], seconds, test_accuracies, strict=True)
        ],
    )


# ---------------------------------------------------------------- the verdict rule


def test_identical_series_are_unclear_not_a_claim_that_does_not_hold() -> None:
    lstm = _timed("lstm", [20.0, 21.0, 22.0], [0.84, 0.85, 0.86])
    gru = _timed("gru", [20.0, 21.0, 22.0], [0.84, 0.85, 0.86])
    verdict = claim_gru_vs_lstm({"lstm": lstm, "gru": gru})
    assert verdict.verdict == Verdict.UNCLEAR
    assert verdict.evidence.count(": unclear") == 2


def test_well_separated_series_give_a_clear_verdict() -> None:
    slow_accurate = _timed("lstm", [20.0, 21.0, 22.0], [0.850, 0.855, 0.860])
    fast_less_accurate = _timed("gru", [10.0, 10.5, 11.0], [0.835, 0.840, 0.845])
    assert claim_gru_vs_lstm({"lstm": slow_accurate, "gru": fast_less_accurate}).verdict == Verdict.HOLDS
    swapped = {"lstm": _timed("lstm", [10.0, 10.5, 11.0], [0.835, 0.840, 0.845])}
    swapped["gru"] = _timed("gru", [20.0, 21.0, 22.0], [0.850, 0.855, 0.860])
    assert claim_gru_vs_lstm(swapped).verdict == Verdict.DOES_NOT_HOLD


SCATTERED, CLOSE, HIGHER = [0.80, 0.85, 0.90], [0.85, 0.855, 0.86], [0.9, 0.905, 0.91]


@pytest.mark.parametrize(
    ("gru_seconds", "lstm_accuracy", "gru_accuracy", "expected", "checks"),
    [
        # faster, accuracies too scattered to compare: one check supports, one is unclear
        ([10.0, 10.5, 11.0], SCATTERED, SCATTERED, Verdict.HOLDS, ("supports", "unclear")),
        # slower, accuracies as scattered: one contradicts, one is unclear
        ([30.0, 31.0, 32.0], SCATTERED, SCATTERED, Verdict.DOES_NOT_HOLD, ("contradicts", "unclear")),
        # faster but clearly more accurate: one supports, one contradicts
        (
            [10.0, 10.5, 11.0],
            [0.85, 0.855, 0.86],
            [0.9, 0.905, 0.91],
            Verdict.MIXED,
            ("supports", "contradicts"),
        ),
    ],
)
def test_only_the_checks_that_decided_make_the_verdict(
    gru_seconds: list[float],
    lstm_accuracy: list[float],
    gru_accuracy: list[float],
    expected: Verdict,
    checks: tuple[str, str],
) -> None:
    lstm = _timed("lstm", [20.0, 21.0, 22.0], lstm_accuracy)
    verdict = claim_gru_vs_lstm({"lstm": lstm, "gru": _timed("gru", gru_seconds, gru_accuracy)})
    assert verdict.verdict == expected
    assert [check.rsplit(": ", 1)[1] for check in verdict.evidence.split("; ")] == list(checks)


def test_a_single_seed_never_decides() -> None:
    lstm = _timed("lstm", [100.0], [0.95])
    gru = _timed("gru", [1.0], [0.50])
    verdict = claim_gru_vs_lstm({"lstm": lstm, "gru": gru})
    assert verdict.verdict == Verdict.UNCLEAR
    assert verdict.evidence.count(f": unclear ({NOT_ENOUGH_SEEDS})") == 2
    assert claim_gru_vs_lstm({"lstm": lstm}).verdict == Verdict.NOT_MEASURED


def test_gap_plateau_verdicts() -> None:
    def plateau(i: int) -> Run:
        return _run(
            SEEDS[i],
            [0.78, 0.80, 0.805 + 0.002 * i, 0.80, 0.803, 0.802 - 0.001 * i],
            accuracy=[0.7, 0.8, 0.84, 0.85, 0.86, 0.86 - 0.005 * i],
        )

    def slow_high(i: int) -> Run:
        return _run(
            SEEDS[i],
            [0.5, 0.6, 0.7, 0.8, 0.9, 0.95 - 0.01 * i],
            accuracy=[0.6, 0.7, 0.8, 0.9, 0.97, 0.99 - 0.005 * i],
        )

    assert claim_gap_plateau({"gap": _seeded("gap", plateau)}).verdict == Verdict.HOLDS
    assert claim_gap_plateau({"gap": _seeded("gap", slow_high)}).verdict == Verdict.DOES_NOT_HOLD
    assert claim_gap_plateau({}).verdict == Verdict.NOT_MEASURED


def test_lstm_overfitting_verdicts() -> None:
    def overfit(i: int) -> Run:
        return _run(
            SEEDS[i],
            [0.85, 0.86 + 0.002 * i, 0.84, 0.83],
            accuracy=[0.85, 0.92, 0.96, 0.98 + 0.005 * i],
            val_loss=[0.35, 0.33, 0.40, 0.50 + 0.02 * i],
        )

    def steady(i: int) -> Run:
        return _run(
            SEEDS[i],
            [0.8, 0.82, 0.84 + 0.003 * i],
            accuracy=[0.8, 0.85, 0.9 - 0.01 * i],
            val_loss=[0.5, 0.45, 0.4 - 0.01 * i],
        )

    verdict = claim_lstm_overfits({"lstm": _seeded("lstm", overfit)})
    assert verdict.verdict == Verdict.HOLDS and "(claimed > 10.0%)" in verdict.evidence
    assert claim_lstm_overfits({"lstm": _seeded("lstm", steady)}).verdict == Verdict.DOES_NOT_HOLD


def _jagged(i: int) -> Run:
    return _run(SEEDS[i], [0.8, 0.9 - 0.01 * i, 0.8, 0.9], val_loss=[0.5, 0.3 + 0.01 * i, 0.5, 0.3])


def _smooth(i: int) -> Run:
    return _run(SEEDS[i], [0.8, 0.82, 0.83 + 0.002 * i, 0.84], val_loss=[0.5, 0.45, 0.44 - 0.002 * i, 0.43])


def test_smoothness_is_judged_over_seeds() -> None:
    jagged, smooth = _seeded("lstm", _jagged), _seeded("lstm2", _smooth)
    assert claim_stacked_lstm_smoother({"lstm": jagged, "lstm2": smooth}).verdict == Verdict.HOLDS
    swapped = {"lstm": _seeded("lstm", _smooth), "lstm2": _seeded("lstm2", _jagged)}
    assert claim_stacked_lstm_smoother(swapped).verdict == Verdict.DOES_NOT_HOLD


def test_much_faster_is_half_the_quicker_recurrent_epoch_time() -> None:
    models = {
        "lstm": _timed("lstm", [9.9, 10.0, 10.1], [0.85] * 3),
        "gru": _timed("gru", [29.0, 30.0, 31.0], [0.85] * 3),
        "flatten": _timed("flatten", [3.9, 4.0, 4.1], [0.85] * 3),  # below 0.5 x 10 s
        "conv": _timed("conv", [5.9, 6.0, 6.1], [0.85] * 3),  # above it
    }
    verdict = claim_flatten_conv_fast(models)
    assert verdict.verdict == Verdict.MIXED
    assert "claimed flatten - 0.5x lstm < 0.0 s" in verdict.evidence


def test_similarity_needs_the_whole_interval_within_the_margin() -> None:
    lstm = _seeded(
        "lstm",
        lambda i: _run(
            SEEDS[i],
            [0.8, 0.9 - 0.01 * i, 0.8, 0.9],
            test_accuracy=0.851 + 0.002 * i,
            test_loss=0.351 + 0.002 * i,
        ),
    )
    close = _seeded(
        "conv", lambda i: _run(SEEDS[i], [0.8, 0.81, 0.82 + 0.001 * i], test_accuracy=0.850 + 0.002 * i)
    )
    assert claim_conv_matches_lstm({"lstm": lstm, "conv": close}).verdict == Verdict.HOLDS
    scattered = _seeded(
        "conv", lambda i: _run(SEEDS[i], [0.8, 0.81, 0.82 + 0.001 * i], test_accuracy=(0.75, 0.85, 0.95)[i])
    )
    verdict = claim_conv_matches_lstm({"lstm": lstm, "conv": scattered})
    accuracy, *others = verdict.evidence.split("; ")
    assert accuracy.startswith("test accuracy conv 85.0 ± 10.0%") and accuracy.endswith(": unclear")
    assert all(check.endswith(": supports") for check in others)
    assert verdict.verdict == Verdict.HOLDS  # the scattered accuracy decides nothing either way


def test_degenerate_runs_are_left_out_unless_all_are() -> None:
    runs = [_run(42, [0.8, 0.84]), _run(43, [0.8, 0.86]), _run(44, [0.55, 0.56], degenerate=True)]
    assert [run.seed for run in _model("rnn", runs).counted] == [42, 43]
    all_degenerate = [_run(seed, [0.55, 0.56], degenerate=True) for seed in SEEDS]
    assert _model("rnn", all_degenerate).counted == tuple(all_degenerate)


# ---------------------------------------------------------------- reading the repository


def _publish(
    models: Path,
    architecture: str,
    version: int,
    runs: list[Run] | None,
    *,
    epochs: int = 3,
    published_seed: int = 42,
    legacy_history: list[float] | None = None,
) -> None:
    """A version as `seqserve train` writes it: with runs.json, or (runs=None) as older versions were."""
    directory = models / f"sarcasm-{architecture}" / str(version)
    directory.mkdir(parents=True)
    config = model_config_pb2.ModelConfig(
        name=f"sarcasm-{architecture}",
        version=version,
        architecture=architecture,
        dataset="sarcasm",
        max_length=20,
        parameter_count=1234,
        training=model_config_pb2.TrainingSummary(
            epochs=epochs, train_examples=100, validation_examples=20, test_examples=30, seed=published_seed
        ),
        export=model_config_pb2.ExportSummary(onnx_converter="tf2onnx", parity_max_abs_error=1e-7),
    )
    write_config(directory / CONFIG_FILE, config)
    if runs is None:
        history = _run(published_seed, legacy_history or [0.7] * epochs).history
        (directory / HISTORY_FILE).write_text(json.dumps(history))
        return
    published = next(run for run in runs if run.seed == published_seed)
    (directory / HISTORY_FILE).write_text(json.dumps(published.history))
    recorded = {
        "selection": "lowest validation loss",
        "majority_rate": 0.56,
        "published_seed": published_seed,
        "runs": [
            {
                "seed": run.seed,
                "published_epoch": run.published_epoch,
                "validation_accuracy": run.validation_accuracy,
                "validation_loss": run.validation_loss,
                "test_accuracy": run.test_accuracy,
                "test_loss": run.test_loss,
                "degenerate": run.degenerate,
                "history": run.history,
            }
            for run in runs
        ],
    }
    (directory / RUNS_FILE).write_text(json.dumps(recorded))


def _curve(seed: int, level: float) -> Run:
    return _run(
        seed,
        [level - 0.02, level, level - 0.01],
        val_loss=[0.45, 0.30 + level / 100, 0.4],
        test_accuracy=level - 0.01,
        seconds=[3.0, 1.0 + seed / 100, 1.1],
    )


def test_the_report_combines_seeds_over_versions_of_one_setup(tmp_path: Path) -> None:
    models = tmp_path / "models"
    _publish(models, "lstm", 1, None, epochs=2)  # a quick run: another setup
    _publish(models, "lstm", 2, [_curve(42, 0.80), _curve(43, 0.70)], published_seed=42)
    _publish(models, "lstm", 3, [_curve(43, 0.84), _curve(44, 0.86)], published_seed=44)
    gru_runs = [_curve(seed, 0.82 + 0.01 * i) for i, seed in enumerate(SEEDS)]
    gru_runs.append(_run(45, [0.56] * 3, degenerate=True))
    _publish(models, "gru", 1, gru_runs, published_seed=43)

    lstm = load_models(models)["sarcasm"]["lstm"]
    assert [(run.seed, run.version) for run in lstm.runs] == [(42, 2), (43, 3), (44, 3)]
    assert lstm.excluded_versions == (1,)
    assert (lstm.version, lstm.published.seed, lstm.published.published_epoch) == (3, 44, 2)

    output = tmp_path / "reports" / "training.md"
    assert report_main(["--models", str(models), "--output", str(output)]) == 0
    text = output.read_text()
    validation = PERCENT.spread(Spread.of([0.80, 0.84, 0.86]))
    test = PERCENT.spread(Spread.of([0.79, 0.83, 0.85]))
    assert f"| sarcasm-lstm | 3 | {validation} | {test} | 3 / 44 / 2 | {PERCENT.show(0.85)} |" in text
    assert "sarcasm-lstm: versions 1 left out" in text
    learnt = PERCENT.spread(Spread.of([0.82, 0.83, 0.84]))
    assert f"| sarcasm-gru | 4 (1 degenerate) | {learnt} |" in text
    assert "**degenerate run**: sarcasm-gru seed 45 (version 1): validation accuracy 56.0%" in text
    assert "## How verdicts are decided" in text and "Welch" in text
    for metric in ("accuracy", "loss"):
        plot = output.parent / f"sarcasm-{metric}.png"
        assert plot.read_bytes().startswith(PNG_MAGIC) and f"(sarcasm-{metric}.png)" in text


def test_versions_without_runs_json_still_report(tmp_path: Path) -> None:
    models = tmp_path / "models"
    _publish(models, "gap", 1, None, legacy_history=[0.6, 0.7, 0.75])
    gap = load_models(models)["sarcasm"]["gap"]
    (run,) = gap.runs
    assert (run.seed, run.published_epoch, run.validation_accuracy, run.test_accuracy) == (42, 3, 0.75, None)
    output = tmp_path / "training.md"
    assert report_main(["--models", str(models), "--output", str(output)]) == 0
    text = output.read_text()
    assert f"| sarcasm-gap | 1 | {PERCENT.show(0.75)} | — | 1 / 42 / 3 | — |" in text
    assert "Versions written before runs.json count as one run each" in text
    assert f"- **{Verdict.UNCLEAR}** — Without RNNs (gap)" in text
    assert f": unclear ({NOT_ENOUGH_SEEDS})" in text


def test_report_on_a_trained_repository(trained_repository: Path, tmp_path: Path) -> None:
    output = tmp_path / "reports" / "training.md"
    assert report_main(["--models", str(trained_repository), "--output", str(output)]) == 0
    text = output.read_text()
    assert f"`seqserve report --models {trained_repository} --output {output}`" in text
    for architecture in ("flatten", "gap", "rnn", "lstm", "lstm2", "gru", "conv"):
        assert f"| sarcasm-{architecture} | 1" in text
    # Five general claims and the sarcasm-only one, none decided on a single seed.
    assert text.count(f"- **{Verdict.UNCLEAR}** — ") == 6
    assert text.count(f"- **{Verdict.DOES_NOT_HOLD}** — ") == 0
    for metric in ("accuracy", "loss"):
        plot = output.parent / f"sarcasm-{metric}.png"
        assert plot.read_bytes().startswith(PNG_MAGIC) and plot.stat().st_size > 10_000


def test_report_without_models_fails(tmp_path: Path) -> None:
    assert report_main(["--models", str(tmp_path), "--output", str(tmp_path / "r.md")]) == 1
    assert not (tmp_path / "r.md").exists()
