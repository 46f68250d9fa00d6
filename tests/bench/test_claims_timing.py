"""bench.claims' in-process plan: which subjects are timed in which setting, with stand-in runtimes."""

from __future__ import annotations

import numpy as np

from bench.claims import Subject, control_batch, time_inference
from bench.inference_timing import TimingBudget
from bench.speed_report import Setting

QUICK = TimingBudget(max_rounds=3, min_rounds=2, seconds_per_subject=0)


class ShapeRecorder:
    """A runtime that remembers the shapes it was called with."""

    name = "fake"

    def __init__(self) -> None:
        self.shapes: set[tuple[int, ...]] = set()

    def run(self, ids: np.ndarray) -> np.ndarray:
        self.shapes.add(ids.shape)
        return np.zeros((len(ids), 2), dtype=np.float32)


def _subjects(trained: bool) -> list[Subject]:
    return [
        Subject(architecture, runtime, trained, ShapeRecorder())
        for runtime in ("onnx", "tf")
        for architecture in ("lstm", "conv")
    ]


def test_control_batch_is_32_or_the_nearest_measured_batch() -> None:
    assert control_batch((1, 8, 32, 128)) == 32
    assert control_batch((1,)) == 1
    assert control_batch((16, 48)) == 16  # a tie goes to the smaller batch


def test_trained_models_run_at_the_dataset_length_untrained_at_both_and_control_without_batch_32() -> None:
    trained, control_untrained, long_untrained = _subjects(True), _subjects(False), _subjects(False)
    inference, control = time_inference(
        trained, {120: control_untrained, 512: long_untrained}, 120, 512, (1, 8), 50, QUICK
    )
    assert all(s.model.shapes == {(1, 120), (8, 120)} for s in trained)
    assert all(s.model.shapes == {(8, 120)} for s in control_untrained)  # the batch nearest 32
    assert all(s.model.shapes == {(1, 512), (8, 512)} for s in long_untrained)
    for clock in ("wall", "cpu"):
        assert set(inference[clock]["onnx"]) == {
            Setting(120, 1),
            Setting(120, 8),
            Setting(512, 1),
            Setting(512, 8),
        }
        assert set(inference[clock]["tf"][Setting(512, 8)]) == {"lstm", "conv"}
        assert set(control[clock]["tf"]) == {"lstm", "conv"}
