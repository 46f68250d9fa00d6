"""Compute per text: a model's tokenize + runtime time over the texts of its executed batches.

The server counts both per model (seqserve_compute_seconds_total, seqserve_compute_texts_total: one
increment each per batch), so the difference of two readings divided out is the model's compute per
text over that interval, whatever its batch sizes, as `rate(seconds) / rate(texts)` is in PromQL.
Read from the server's own registry (the compare page) or a parsed /metrics page (the load tester).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from seqserve.metric_names import COMPUTE_SECONDS, COMPUTE_TEXTS


@dataclass(frozen=True)
class ComputeTotals:
    """One model's two counters, its versions and runtimes summed."""

    seconds: float = 0.0
    texts: float = 0.0

    @property
    def per_text_s(self) -> float:
        """NaN when no text was computed."""
        return self.seconds / self.texts if self.texts > 0 else math.nan

    def minus(self, earlier: ComputeTotals | None) -> ComputeTotals:
        """What was computed between `earlier` and this reading (a server restart resets to self)."""
        if earlier is None or earlier.texts > self.texts:
            return self
        return ComputeTotals(self.seconds - earlier.seconds, self.texts - earlier.texts)


def compute_per_model(samples: Iterable[Any]) -> dict[str, ComputeTotals]:
    """The totals per `model` label from prometheus_client `Sample`s (a registry's or a parsed page's);
    other samples are ignored."""
    seconds: dict[str, float] = defaultdict(float)
    texts: dict[str, float] = defaultdict(float)
    for sample in samples:
        if sample.name == COMPUTE_SECONDS + "_total":
            seconds[sample.labels.get("model", "")] += sample.value
        elif sample.name == COMPUTE_TEXTS + "_total":
            texts[sample.labels.get("model", "")] += sample.value
    return {model: ComputeTotals(seconds[model], texts[model]) for model in sorted(texts.keys() | seconds)}


def times_fastest(costs: Sequence[float]) -> list[float]:
    """Each cost over the smallest positive one (NaN where a cost is missing, or none is positive)."""
    known = [cost for cost in costs if math.isfinite(cost) and cost > 0]
    fastest = min(known) if known else math.nan
    return [cost / fastest if math.isfinite(cost) else math.nan for cost in costs]
