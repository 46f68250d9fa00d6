"""bench.claims' in-process plan: which subjects are timed in which setting, padded as the server pads
them, with stand-in runtimes."""

from __future__ import annotations

import numpy as np
from tokenizers import Tokenizer, pre_tokenizers
from tokenizers.models import WordLevel

from bench.claims import (
    REAL_BATCHES,
    RealTexts,
    Subject,
    control_batch,
    plan,
    serve_and_measure,
    time_inference,
)
from bench.inference_timing import TimingBudget
from bench.speed_report import REAL_TEXTS, Setting
from seqserve.loadtest.runner import LoadSpec
from serving.sequence import SequencePadding
from serving.tokenization import TokenEncoder
from tests.conftest import DATA_DIR

QUICK = TimingBudget(max_rounds=3, min_rounds=2, seconds_per_subject=0)
# architecture -> (variable length, trailing padding)
SEQUENCES = {"lstm": (True, 0), "conv": (True, 5), "flatten": (False, 0)}


class ShapeRecorder:
    """A runtime that remembers the shapes it was called with."""

    name = "fake"

    def __init__(self) -> None:
        self.shapes: set[tuple[int, ...]] = set()

    def run(self, ids: np.ndarray) -> np.ndarray:
        self.shapes.add(ids.shape)
        return np.zeros((len(ids), 2), dtype=np.float32)


def _subjects(trained: bool, max_length: int = 120) -> list[Subject]:
    return [
        Subject(architecture, runtime, trained, ShapeRecorder(), SequencePadding(max_length, *sequence))
        for runtime in ("onnx", "tf")
        for architecture, sequence in SEQUENCES.items()
    ]


def _real_texts() -> RealTexts:
    tokenizer = Tokenizer(WordLevel({"[PAD]": 0, "[UNK]": 1, "cat": 2}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.enable_truncation(max_length=120)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]", length=120)
    # batches of 1 hold a text of 3 or of 1 token, batches of 8 both
    return RealTexts(["cat dog cat", "cat"] * (4 * REAL_BATCHES), TokenEncoder(tokenizer))


def test_control_batch_is_32_or_the_nearest_measured_batch() -> None:
    assert control_batch((1, 8, 32, 128)) == 32
    assert control_batch((1,)) == 1
    assert control_batch((16, 48)) == 16  # a tie goes to the smaller batch


def test_every_text_length_is_padded_as_each_model_needs_and_control_runs_full_texts_only() -> None:
    trained, control_untrained, long_untrained = _subjects(True), _subjects(False), _subjects(False, 512)
    inference, control = time_inference(
        trained, {120: control_untrained, 512: long_untrained}, 120, 512, (1, 8), 50, _real_texts(), QUICK
    )
    widths = {"lstm": (8, 16, 32, 64, 120), "conv": (13, 21, 37, 69, 120), "flatten": (120,)}
    real = {
        "lstm": {(1, 3), (1, 1), (8, 3)},
        "conv": {(1, 8), (1, 6), (8, 8)},
        "flatten": {(1, 120), (8, 120)},
    }
    for subject in trained:
        fixed = {(b, w) for b in (1, 8) for w in widths[subject.architecture]}
        assert subject.model.shapes == fixed | real[subject.architecture]
    assert all(s.model.shapes == {(8, 120)} for s in control_untrained)  # the batch nearest 32, full texts
    assert all(s.model.shapes == {(1, 512), (8, 512)} for s in long_untrained)
    for clock in ("wall", "cpu"):
        assert set(inference[clock]["onnx"]) == {
            *(Setting(120, b, t) for b in (1, 8) for t in (8, 16, 32, 64, 120, REAL_TEXTS)),
            Setting(512, 1, 512),
            Setting(512, 8, 512),
        }
        assert set(inference[clock]["tf"][Setting(512, 8, 512)]) == set(SEQUENCES)
        assert set(control[clock]["tf"]) == set(SEQUENCES)


def test_shorter_texts_are_timed_at_batch_1_and_the_control_batch_full_ones_at_every_batch() -> None:
    settings = plan(120, 512, (1, 8, 32, 128))
    shorter = {(s.batch, s.tokens) for s in settings if not s.full}
    assert shorter == {(b, t) for b in (1, 32) for t in (8, 16, 32, 64, REAL_TEXTS)}
    assert {(s.max_length, s.batch) for s in settings if s.full} == {
        (m, b) for m in (120, 512) for b in (1, 8, 32, 128)
    }
    assert plan(40, 512, (1,))[:4] == [
        Setting(40, 1, 8),
        Setting(40, 1, 16),
        Setting(40, 1, 32),
        Setting(40, 1, REAL_TEXTS),
    ]


def test_the_served_phase_measures_every_model_on_both_runtimes(tiny_model_repository) -> None:
    """Regression: the served phase called the cell measurement (then bench.run.measure) with the
    arguments it took before it was handed a server, and `make claims` failed after its in-process phase."""
    spec = LoadSpec(duration_s=0.3, warmup_s=0.1, max_requests=50)
    served = serve_and_measure(
        tiny_model_repository, ["sarcasm-gru"], spec, DATA_DIR / "sarcasm" / "sarcasm.json"
    )
    assert {
        runtime: [(c.target, c.runtime, c.concurrency) for c in cells] for runtime, cells in served.items()
    } == {runtime: [("sarcasm-gru", runtime, c) for c in (1, 32)] for runtime in ("onnx", "tf")}
    assert all(c.summary.ok > 0 and not c.summary.errors for cells in served.values() for c in cells)
