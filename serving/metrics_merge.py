"""One /metrics for `--workers N`: every worker's exposition, merged into the figures of one server.

Each worker keeps its own in-process registry, so a request costs no more than with one process (no
shared-memory files written per observation) and unloading a version removes its series as before.
At scrape time the supervisor fetches every worker's exposition (Prometheus text format) and merges
samples of the same name and labels:

- counters and histograms (`_total`, `_bucket`, `_count`, `_sum`): summed, so per-model histograms stay
  histograms whose quantiles cover every worker's requests;
- `_created`: the earliest;
- gauges: summed (requests in flight, queue depth: the server's total), except those in `MIN_GAUGES`:
  `seqserve_model_ready` is 1 only when the version is ready in every serving worker (one without the
  series counts as 0). Only workers that serve vote: one that is still starting (a replacement loading
  its models) or that did not answer the scrape does not make a version the server serves look unready.

The supervisor adds its own families (`supervisor_exposition`): workers by state and restarts by
reason, so /metrics shows a server running short of workers.

It works on the text itself (prometheus-client writes one sample per line, `name{labels} value`,
after its family's `# HELP` and `# TYPE` lines), so the supervisor needs no metrics library. Either
format merges: the Prometheus text format, or OpenMetrics when the scraper asks for it
(`wants_openmetrics`), whose histogram buckets may carry an exemplar (`# {trace_id="..."} value
timestamp`, serving.tracing) and which ends in `# EOF`. A merged bucket keeps the newest exemplar
any worker has for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from seqserve.metric_names import MODEL_READY, WORKER_RESTARTS, WORKERS

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
    # "name{labels}" -> (worker index, value) per worker that has the sample
    samples: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
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


def merge(expositions: Sequence[str], serving: Sequence[bool] | None = None) -> str:
    """The expositions of `len(expositions)` workers as the exposition of one server; `serving[i]`:
    worker i serves (None: every one does), so its readiness counts."""
    voters = frozenset(i for i in range(len(expositions)) if serving is None or serving[i])
    families: dict[str, _Family] = {}
    openmetrics = False
    for index, text in enumerate(expositions):
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
                family.samples.setdefault(sample, []).append((index, float(value)))
                if marker and _newer(exemplar, family.exemplars.get(sample)):
                    family.exemplars[sample] = marker + exemplar
    lines = []
    for name, family in families.items():
        lines += family.header
        for sample, values in family.samples.items():
            merged = _combine(name, family.kind, sample, values, voters)
            lines.append(f"{sample} {merged!r}{family.exemplars.get(sample, '')}")
    if openmetrics:
        lines.append(EOF)
    return "\n".join(lines) + "\n" if lines else ""


def _combine(
    family: str, kind: str, sample: str, values: list[tuple[int, float]], voters: frozenset[int]
) -> float:
    if sample.split("{", 1)[0].endswith("_created"):
        return min(value for _, value in values)
    if kind == "gauge" and family in MIN_GAUGES:
        votes = [value for index, value in values if index in voters]
        return min(votes) if voters and len(votes) == len(voters) else 0.0
    return sum(value for _, value in values)


def _family(
    name: str, kind: str, help_text: str, samples: Mapping[str, int], label: str, openmetrics: bool
) -> list[str]:
    sample_name = f"{name}_total" if kind == "counter" else name
    family = name if openmetrics else sample_name  # OpenMetrics names a counter's family without _total
    return [
        f"# HELP {family} {help_text}",
        f"# TYPE {family} {kind}",
        *(f'{sample_name}{{{label}="{key}"}} {float(count)!r}' for key, count in samples.items()),
    ]


def supervisor_exposition(
    workers: Mapping[str, int], restarts: Mapping[str, int], openmetrics: bool = False
) -> str:
    """The supervisor's own families: `workers` by state (ready, starting, draining) and `restarts`
    of workers by reason (exit, timeout, rss), in the text format or OpenMetrics (without # EOF)."""
    lines = _family(WORKERS, "gauge", "Worker processes by state", workers, "state", openmetrics)
    lines += _family(
        WORKER_RESTARTS,
        "counter",
        "Workers replaced: exit (it exited on its own), timeout (heartbeat unanswered, or loading too long), "
        "rss (recycled)",
        restarts,
        "reason",
        openmetrics,
    )
    return "\n".join(lines) + "\n"
