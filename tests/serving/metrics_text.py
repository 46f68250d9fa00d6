"""Reading a /metrics page in tests.

A series that is not on the page is an error, never a 0: a check like `value(...) == 0` must not pass
because the series vanished or was renamed. Only `delta` reads an absent series as 0, and only on its
earlier page (a labelled counter appears with its first increment).
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


class MissingSeries(AssertionError):
    """No sample of that name with those labels is on the page."""


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample called exactly `name` (e.g. seqserve_batch_size_count), with its labels."""
    found = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found.append((dict(sample.labels), sample.value))
    return found


def value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`; raises MissingSeries when there is none."""
    matching = [v for sample_labels, v in samples(text, name) if labels.items() <= sample_labels.items()]
    if not matching:
        raise MissingSeries(f"no {name} series with labels {labels} on the page")
    return sum(matching)


def delta(before: str, after: str, name: str, **labels: str) -> float:
    """How much `value` moved between two scrapes; the series must be on the later one."""
    try:
        earlier = value(before, name, **labels)
    except MissingSeries:
        earlier = 0.0
    return value(after, name, **labels) - earlier
