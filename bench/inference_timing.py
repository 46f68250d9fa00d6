"""In-process inference timing of several runtimes at once, interleaved so that they share the noise.

The machine is shared: a burst of someone else's work that lands on one model's measurement would
otherwise show up as that model being slow. Here every round runs each subject once (in a rotated
order), so a burst hits all of them; each subject's samples are kept for a median and spread.
A sample is the mean of enough back-to-back calls to last about MIN_SAMPLE_S, so that sub-millisecond
calls are not measured at the resolution of one call's jitter.

Each sample has two clocks: wall time (the latency a caller sees, inflated whenever other processes
hold the CPUs) and this process's CPU time (the work itself, which others' load hardly changes; the
runtimes run single-threaded with idle threads that do not spin, so nothing else in the process uses CPU).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

MIN_SAMPLE_S = 0.002
MAX_CALLS_PER_SAMPLE = 50
WARM_UP_CALLS = 3


@dataclass(frozen=True)
class TimingBudget:
    """Rounds stop at `max_rounds`, or once `min_rounds` are done and `seconds_per_subject` x subjects
    have passed, whichever comes first."""

    max_rounds: int = 100
    min_rounds: int = 5
    seconds_per_subject: float = 2.0


def _calls_per_sample(run: Callable[[], object]) -> int:
    for _ in range(WARM_UP_CALLS):
        run()
    started = time.perf_counter()
    run()
    one_call = max(time.perf_counter() - started, 1e-9)
    return int(min(MAX_CALLS_PER_SAMPLE, max(1, math.ceil(MIN_SAMPLE_S / one_call))))


@dataclass(frozen=True)
class Samples:
    """Seconds per call, one sample per round: subject name -> samples, for each clock."""

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]


def interleaved_timings(subjects: Mapping[str, Callable[[], object]], budget: TimingBudget) -> Samples:
    names = list(subjects)
    calls = {name: _calls_per_sample(subjects[name]) for name in names}
    samples = Samples({name: [] for name in names}, {name: [] for name in names})
    deadline = time.perf_counter() + budget.seconds_per_subject * len(names)
    for round_number in range(budget.max_rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            run, n = subjects[name], calls[name]
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(n):
                run()
            samples.cpu[name].append((time.process_time() - cpu) / n)
            samples.wall[name].append((time.perf_counter() - wall) / n)
        if round_number + 1 >= budget.min_rounds and time.perf_counter() > deadline:
            break
    return samples


def random_ids(batch: int, tokens: int, width: int, vocab_size: int, seed: int = 0) -> np.ndarray:
    """Ids of texts of `tokens` tokens each, padded with id 0 to `width` columns: random non-zero ids, as
    the cost does not depend on which tokens a text has, only on how many (variable-length graphs stop
    at the padding) and on the width."""
    ids = np.zeros((batch, width), dtype=np.int32)
    ids[:, :tokens] = np.random.default_rng(seed).integers(1, vocab_size, (batch, tokens), dtype=np.int32)
    return ids
