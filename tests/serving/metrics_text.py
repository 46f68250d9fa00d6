"""Reading a /metrics page in tests."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample called exactly `name` (e.g. seqserve_batch_size_count), with its labels."""
    found = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found.append((dict(sample.labels), sample.value))
    return found


def value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when there are none)."""
    return sum(v for sample_labels, v in samples(text, name) if labels.items() <= sample_labels.items())


def delta(before: str, after: str, name: str, **labels: str) -> float:
    """How much `value` moved between two scrapes."""
    return value(after, name, **labels) - value(before, name, **labels)
