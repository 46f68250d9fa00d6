"""The interleaved timing loop: bounded rounds, every subject once per round, rotated order."""

from __future__ import annotations

from itertools import groupby

import numpy as np

from bench.inference_timing import TimingBudget, interleaved_timings, random_ids


def _recording(names: list[str]) -> tuple[dict[str, object], list[str]]:
    calls: list[str] = []
    return {name: (lambda name=name: calls.append(name)) for name in names}, calls


def test_rounds_stop_at_max_rounds_with_one_sample_per_subject_each() -> None:
    subjects, _ = _recording(["a", "b", "c"])
    samples = interleaved_timings(subjects, TimingBudget(max_rounds=7, min_rounds=2, seconds_per_subject=60))
    for clock in (samples.wall, samples.cpu):
        assert {name: len(values) for name, values in clock.items()} == {"a": 7, "b": 7, "c": 7}
    assert all(value > 0 for values in samples.wall.values() for value in values)


def test_an_exhausted_time_budget_still_runs_min_rounds() -> None:
    subjects, _ = _recording(["a", "b"])
    samples = interleaved_timings(subjects, TimingBudget(max_rounds=30, min_rounds=4, seconds_per_subject=0))
    assert [len(values) for values in samples.wall.values()] == [4, 4]


def test_each_round_starts_with_the_next_subject() -> None:
    subjects, calls = _recording(["a", "b", "c"])
    interleaved_timings(subjects, TimingBudget(max_rounds=4, min_rounds=4, seconds_per_subject=60))
    # consecutive calls of one subject are one sample (or the calibration before the rounds)
    runs = [name for name, _ in groupby(calls)]
    rounds = runs[-12:]
    assert [rounds[i : i + 3] for i in range(0, 12, 3)] == [
        ["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"],
    ]  # fmt: skip


def test_random_ids_are_valid_token_ids_then_padding_and_repeatable() -> None:
    ids = random_ids(8, 16, 21, 50)
    assert ids.shape == (8, 21) and ids.dtype == np.int32
    assert ids[:, :16].min() >= 1 and ids.max() < 50  # 0 is padding
    assert (ids[:, 16:] == 0).all()
    assert np.array_equal(ids, random_ids(8, 16, 21, 50))
