"""The models' own compute, as the server runs it (tokenize + runtime), in this process: what no
transport can beat, shown beside the targets and as the in-process bound of the 32-text cells; and
the same compute for the batches the server executed in a native cell (`served_batch_costs`), for the
per-request CPU account."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bench.in_process import InProcessModel, load_in_process
from bench.inference_timing import TimingBudget, interleaved_timings
from bench.models import ModelFiles

IN_PROCESS_BATCHES = (1, 32)
IN_PROCESS_CHUNKS = 8  # one timed call runs this many different batches of real texts


@dataclass(frozen=True)
class InProcessCost:
    """CPU µs per text at each batch size of IN_PROCESS_BATCHES, median of interleaved samples."""

    model: str
    cpu_us_per_text: dict[int, float]

    def texts_per_cpu_second(self, batch: int) -> float:
        return 1e6 / self.cpu_us_per_text[batch]

    def line(self, batch: int) -> str:
        return (
            f"in process (tokenize + runtime, batch {batch}): {self.cpu_us_per_text[batch]:.0f} µs of CPU "
            f"per text, at most {self.texts_per_cpu_second(batch):.0f} texts/s per CPU"
        )


def in_process_costs(
    models: Sequence[ModelFiles], repository: Path, texts: Sequence[str]
) -> list[InProcessCost]:
    """Each model's tokenize + runtime per text at batch 1 and 32 of real texts."""
    loaded = {m.name: load_in_process(m.version_dir, m.config, repository) for m in models}
    batches = {
        b: [list(texts[i * b : (i + 1) * b]) for i in range(IN_PROCESS_CHUNKS)] for b in IN_PROCESS_BATCHES
    }

    def run(model: InProcessModel, batch: int) -> None:
        for chunk in batches[batch]:
            model.predict(chunk)

    subjects = {
        (name, b): partial(run, model, b) for name, model in loaded.items() for b in IN_PROCESS_BATCHES
    }
    samples = interleaved_timings(
        {f"{name} {b}": call for (name, b), call in subjects.items()},
        TimingBudget(min_rounds=5, seconds_per_subject=0.3),
    )
    return [
        InProcessCost(
            name,
            {
                b: 1e6 * statistics.median(samples.cpu[f"{name} {b}"]) / (IN_PROCESS_CHUNKS * b)
                for b in IN_PROCESS_BATCHES
            },
        )
        for name in loaded
    ]


# (model, texts per request, texts per executed batch)
ServedBatch = tuple[str, int, int]


def served_batch(texts: Sequence[str], per_request: int, size: int) -> list[str]:
    """A batch as the server formed it from h2load's calls: every call sends the same first
    `per_request` texts, so a batch of `size` texts is those texts over and over."""
    return list(itertools.islice(itertools.cycle(texts[:per_request]), size))


def served_batch_costs(
    models: Sequence[ModelFiles], repository: Path, texts: Sequence[str], batches: Sequence[ServedBatch]
) -> Mapping[ServedBatch, float]:
    """CPU µs of tokenize + runtime of each batch (median of interleaved samples), in this process."""
    loaded = {m.name: load_in_process(m.version_dir, m.config, repository) for m in models}
    names = {batch: " ".join(map(str, batch)) for batch in batches}
    subjects = {
        names[batch]: partial(loaded[batch[0]].predict, served_batch(texts, *batch[1:])) for batch in batches
    }
    samples = interleaved_timings(subjects, TimingBudget(min_rounds=5, seconds_per_subject=0.2))
    return {batch: 1e6 * statistics.median(samples.cpu[name]) for batch, name in names.items()}
