"""One /metrics for `--workers N`: every worker's exposition, merged into the figures of one server.

Each worker keeps its own in-process registry, so a request costs no more than with one process (no
shared-memory files written per observation) and unloading a version removes its series as before.
At scrape time the supervisor fetches every worker's exposition (Prometheus text format) and merges
samples of the same name and labels:

- counters and histograms (`_total`, `_bucket`, `_count`, `_sum`): summed, so per-model histograms stay
  histograms whose quantiles cover every worker's requests;
- `_created`: the earliest;
- gauges: summed (requests in flight, queue depth: the server's total), except those in `MIN_GAUGES`:
  `seqserve_model_ready` is 1 only when the version is ready in every worker (a worker without the
  series counts as 0).

It works on the text itself (prometheus-client writes one sample per line, `name{labels} value`,
after its family's `# HELP` and `# TYPE` lines), so the supervisor needs no metrics library. Either
format merges: the Prometheus text format, or OpenMetrics when the scraper asks for it
(`wants_openmetrics`), whose histogram buckets may carry an exemplar (`# {trace_id="..."} value
timestamp`, serving.tracing) and which ends in `# EOF`. A merged bucket keeps the newest exemplar
any worker has for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from seqserve.metric_names import MODEL_READY

MIN_GAUGES = frozenset({MODEL_READY})
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
OPENMETRICS = "application/openmetrics-text"
EOF = "# EOF"
EXEMPLAR = " # "


@dataclass
class _Family:
    header: list[str]  # its "# HELP" and "# TYPE" lines
    kind: str = "untyped"
    samples: dict[str, list[float]] = field(default_factory=dict)  # "name{labels}" -> value per worker
    exemplars: dict[str, str] = field(default_factory=dict)  # "name{labels}" -> " # {...} value time"


def wants_openmetrics(accept: str) -> bool:
    """The scraper's Accept header lists OpenMetrics (as Prometheus' does, with exemplar storage on
    or not); prometheus-client's own /metrics chooses the same way."""
    return any(part.split(";", 1)[0].strip() == OPENMETRICS for part in accept.split(","))


def _newer(exemplar: str, kept: str | None) -> bool:
    """Exemplars end in their timestamp (prometheus-client always writes one)."""
    if kept is None:
        return True
    try:
        return float(exemplar.rsplit(" ", 1)[1]) >= float(kept.rsplit(" ", 1)[1])
    except (IndexError, ValueError):
        return True


def merge(expositions: Sequence[str]) -> str:
    """The expositions of `len(expositions)` workers as the exposition of one server."""
    families: dict[str, _Family] = {}
    openmetrics = False
    for text in expositions:
        family: _Family | None = None
        for line in text.splitlines():
            if line == EOF:
                openmetrics = True
            elif line.startswith("# "):
                _, keyword, name, *rest = line.split(" ", 3)
                if name not in families:
                    families[name] = _Family([])
                family = families[name]
                if keyword == "TYPE":
                    family.kind = rest[0] if rest else "untyped"
                if line not in family.header:
                    family.header.append(line)
            elif line and family is not None:
                line, marker, exemplar = line.partition(EXEMPLAR)
                sample, value = line.rsplit(" ", 1)
                family.samples.setdefault(sample, []).append(float(value))
                if marker and _newer(exemplar, family.exemplars.get(sample)):
                    family.exemplars[sample] = marker + exemplar
    lines = []
    for name, family in families.items():
        lines += family.header
        for sample, values in family.samples.items():
            merged = _combine(name, family.kind, sample, values, len(expositions))
            lines.append(f"{sample} {merged!r}{family.exemplars.get(sample, '')}")
    if openmetrics:
        lines.append(EOF)
    return "\n".join(lines) + "\n" if lines else ""


def _combine(family: str, kind: str, sample: str, values: list[float], workers: int) -> float:
    if sample.split("{", 1)[0].endswith("_created"):
        return min(values)
    if kind == "gauge" and family in MIN_GAUGES:
        return min(values) if len(values) == workers else 0.0
    return sum(values)
