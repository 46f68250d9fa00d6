"""The job-wide progress line: epochs done of all architectures x seeds x epochs, elapsed, ETA."""

from __future__ import annotations

import io

from training.progress import JobProgress, clock


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_eta_uses_each_architectures_own_epoch_time() -> None:
    stream, now = io.StringIO(), _Clock()
    progress = JobProgress(("fast", "slow"), seeds=2, epochs=3, stream=stream, now=now)
    assert progress.prefix() == "[0/12 epochs, 0s elapsed, ETA ?]"
    now.now = 2.0
    progress.epoch_done("fast", 2.0, "fast seed 1 epoch 1")
    # fast: 5 more epochs at 2 s; slow, not started: 6 epochs at the mean so far, 2 s.
    assert progress.eta_seconds() == 22.0
    for _ in range(5):
        progress.epoch_done("fast", 2.0, "fast")
    now.now = 72.0
    progress.epoch_done("slow", 60.0, "slow seed 1 epoch 1")
    assert progress.eta_seconds() == 5 * 60.0
    lines = stream.getvalue().splitlines()
    assert len(lines) == 7
    assert lines[-1] == "[7/12 epochs, 1m12s elapsed, ETA 5m00s] slow seed 1 epoch 1"


def test_clock_formats() -> None:
    assert [clock(s) for s in (42, 185, 3720)] == ["42s", "3m05s", "1h02m"]
