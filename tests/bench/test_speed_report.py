"""The speed report: verdicts per context come from that context's timings, and per text length where
the claim holds; training from history.json."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from bench.claims import training_timings
from bench.speed_report import (
    REAL_TEXTS,
    Setting,
    SpeedRun,
    TrainingTiming,
    claim_verdicts,
    render,
    setting_texts,
    where_it_holds,
)
from bench.speed_verdicts import CLAIMS, TimingSpread
from seqserve.v1 import model_config_pb2
from seqserve.verdicts import Verdict
from training.repository import CONFIG_FILE, HISTORY_FILE, write_config

ARCHITECTURES = ("flatten", "gap", "rnn", "lstm", "lstm2", "gru", "conv")
GRU_CLAIM = next(i for i, claim in enumerate(CLAIMS) if claim.text == "GRU is faster than LSTM")


def exact(value: float) -> TimingSpread:
    return TimingSpread(value, value * 0.99, value * 1.01, 10)


def speed_run(training: dict[str, float], onnx: dict[str, float], tf: dict[str, float]) -> SpeedRun:
    setting = Setting(120, 32, 120)
    return SpeedRun(
        dataset="sarcasm",
        dataset_length=120,
        long_length=512,
        batches=(32,),
        architectures=ARCHITECTURES,
        inference={
            "wall": {
                "onnx": {setting: {a: exact(v) for a, v in onnx.items()}},
                "tf": {setting: {a: exact(v) for a, v in tf.items()}},
            },
            # CPU time: the reverse of the latency, to see that each clock is judged on its own
            "cpu": {
                "onnx": {setting: {a: exact(v) for a, v in tf.items()}},
                "tf": {setting: {a: exact(v) for a, v in onnx.items()}},
            },
        },
        control={"wall": {}, "cpu": {}},
        control_batch=32,
        training={a: TrainingTiming(a, f"sarcasm-{a}", 1, "2-10", exact(v)) for a, v in training.items()},
        served={},
        header=["- machine: test"],
    )


def test_each_context_is_judged_on_its_own_timings() -> None:
    base = dict.fromkeys(ARCHITECTURES, 1.0)
    run = speed_run(
        training=base | {"gru": 5.0, "lstm": 10.0},  # GRU faster in training
        onnx=base | {"gru": 10.0, "lstm": 5.0},  # slower on ONNX Runtime
        tf=base | {"gru": 3.0, "lstm": 6.0},  # faster on TensorFlow
    )
    verdicts = claim_verdicts(run)
    gru = {context: found[GRU_CLAIM].verdict for context, found in verdicts.items()}
    assert gru == {
        "training": Verdict.HOLDS,
        "ONNX Runtime latency": Verdict.DOES_NOT_HOLD,
        "ONNX Runtime CPU time": Verdict.HOLDS,
        "TensorFlow SavedModel latency": Verdict.HOLDS,
        "TensorFlow SavedModel CPU time": Verdict.DOES_NOT_HOLD,
    }
    assert "| GRU is faster than LSTM | **holds** (1/1 support); speed-up gru vs lstm 2.00x" in (
        render(run, [])
    )


def _publish(models: Path, architecture: str, version: int, seconds: list[float]) -> None:
    directory = models / f"sarcasm-{architecture}" / str(version)
    directory.mkdir(parents=True)
    config = model_config_pb2.ModelConfig(
        name=f"sarcasm-{architecture}", version=version, architecture=architecture, dataset="sarcasm"
    )
    write_config(directory / CONFIG_FILE, config)
    history = {key: [0.5] * len(seconds) for key in ("loss", "accuracy", "val_loss", "val_accuracy")}
    (directory / HISTORY_FILE).write_text(json.dumps(history | {"seconds": seconds}))


def test_training_time_is_the_newest_version_without_its_first_epoch(tmp_path: Path) -> None:
    _publish(tmp_path, "conv", 1, [1.0, 1.0, 1.0])
    _publish(tmp_path, "conv", 2, [30.0, 2.0, 4.0, 9.0])
    _publish(tmp_path, "gru", 1, [7.0])
    timings = training_timings(tmp_path, "sarcasm")
    conv = timings["conv"]
    assert (conv.version, conv.epochs_used, conv.seconds.median, conv.seconds.count) == (2, "2-4", 4.0, 3)
    assert (timings["gru"].epochs_used, timings["gru"].seconds.median) == ("1", 7.0)
    assert training_timings(tmp_path, "imdb") == {}


def test_report_ratios_are_relative_to_lstm() -> None:
    base = dict.fromkeys(ARCHITECTURES, 2.0) | {"lstm": 4.0}
    text = render(speed_run(base, base, base), [])
    assert "| flatten | 2.00 (0.50x) |" in text
    assert "| flatten | sarcasm-flatten v1 | 2-10 | 2.0 | 2.0-2.0 | 0.50x |" in text


def test_control_names_only_untrained_networks_that_cost_clearly_more_or_less() -> None:
    base = dict.fromkeys(ARCHITECTURES, 1.0)
    pairs = {a: (exact(1.0), exact(1.02)) for a in ARCHITECTURES} | {"rnn": (exact(1.2), exact(2.1))}
    run = replace(speed_run(base, base, base), control={"wall": {}, "cpu": {"onnx": pairs}})
    text = render(run, [])
    assert (
        "differs clearly from the trained one's for: rnn on ONNX Runtime (trained / untrained = 0.57)."
        in text
    )
    same = replace(run, control={"wall": {}, "cpu": {"onnx": pairs | {"rnn": (exact(1.0), exact(1.0))}}})
    assert "no untrained network's cost differs" in render(same, [])


def test_where_a_claim_holds_is_judged_for_each_text_length() -> None:
    base = dict.fromkeys(ARCHITECTURES, 2.0)
    by_length = {  # LSTM stops at the padding of short texts and is the cheapest there
        Setting(120, 32, 8): base | {"lstm": 1.0},
        Setting(120, 32, 120): base | {"lstm": 9.0},
        Setting(120, 32, REAL_TEXTS): base | {"lstm": 3.0, "flatten": 4.0},  # faster than Flatten only
    }
    timings = {s: {a: exact(v) for a, v in t.items()} for s, t in by_length.items()}
    run = replace(
        speed_run(base, base, base),
        inference={clock: {"onnx": timings, "tf": timings} for clock in ("wall", "cpu")},
    )
    lstm_claim = next(i for i, claim in enumerate(CLAIMS) if claim.text.startswith("LSTM is slower"))
    verdict = claim_verdicts(run)["ONNX Runtime CPU time"][lstm_claim]
    assert verdict.verdict == Verdict.MIXED
    assert (
        where_it_holds(verdict, setting_texts(run))
        == "holds: 120 tokens; mixed: real texts; does not hold: 8 tokens"
    )
    assert (
        f"| {CLAIMS[lstm_claim].text} | holds: 120 tokens; mixed: real texts; does not hold: 8 tokens |"
        in render(run, [])
    )
