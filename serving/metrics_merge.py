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

Counters and histograms never go backwards (`WorkerTotals`), or Prometheus would read a counter reset
and `rate()` would add every other worker's lifetime total: a worker that misses a scrape counts with
the counters and histograms of its last answer, and a worker that is gone (crashed, killed, recycled)
leaves those as an offset that later scrapes add in. The offset of a model version that no serving
worker has loaded any more is dropped, as the workers drop that version's series.

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

import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from seqserve.metric_names import MODEL_READY, WORKER_RESTARTS, WORKERS

MIN_GAUGES = frozenset({MODEL_READY})
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
OPENMETRICS = "application/openmetrics-text"
EOF = "# EOF"
EXEMPLAR = " # "
GROWING = frozenset({"counter", "histogram", "summary"})  # the metric types whose samples only grow
UNKNOWN_MODEL = "_unknown"  # serving.metrics' label for requests naming no loaded model
_MODEL = re.compile(r'[{,]model="([^"]*)"')
_VERSION = re.compile(r'[{,]version="([^"]*)"')


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


def cumulative(text: str) -> str:
    """The families of an exposition that only grow: counters, histograms, summaries, and the
    `_created` timestamps the text format writes as families of their own."""
    families: list[tuple[str, list[str]]] = []  # (name, its lines)
    kept: set[int] = set()  # indices of the families to keep
    for line in text.splitlines():
        if line == EOF:
            continue
        words = line.split(" ", 3) if line.startswith("# ") else []
        if len(words) >= 3 and (not families or words[2] != families[-1][0]):
            families.append((words[2], []))
        if not families:
            continue
        if len(words) == 4 and words[1] == "TYPE" and (words[3] in GROWING or words[2].endswith("_created")):
            kept.add(len(families) - 1)
        families[-1][1].append(line)
    lines = [line for index, (_, block) in enumerate(families) if index in kept for line in block]
    return "\n".join(lines) + "\n" if lines else ""


def _version_of(sample: str) -> tuple[str, str] | None:
    """(model, version) of a sample of a model version; None for any other."""
    model, version = _MODEL.search(sample), _VERSION.search(sample)
    if model is None or version is None or model.group(1) == UNKNOWN_MODEL:
        return None
    return model.group(1), version.group(1)


def _loaded_versions(texts: Sequence[str]) -> set[tuple[str, str]]:
    return {
        version
        for text in texts
        for line in text.splitlines()
        if line.startswith(MODEL_READY + "{") and (version := _version_of(line)) is not None
    }


def _without_versions_other_than(text: str, loaded: set[tuple[str, str]]) -> str:
    kept = [
        line
        for line in text.splitlines()
        if line.startswith("#") or (version := _version_of(line)) is None or version in loaded
    ]
    return "\n".join(kept) + "\n" if kept else ""


@dataclass(frozen=True)
class Answer:
    """One worker's answer to a scrape."""

    worker: int  # unique among every worker the supervisor ever started
    text: str | None  # its exposition; None when it did not answer in time
    serving: bool  # it serves (its readiness votes)


class WorkerTotals:
    """Merges the workers' answers so that counters and histograms never go backwards: the last answer
    of a worker that misses a scrape stands in for it, and the workers that are gone leave their last
    counts behind, kept as an offset. Thread-safe: scrapes run on the metrics server's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[tuple[int, bool], str] = {}  # (worker, openmetrics) -> its last counts
        self._gone: dict[bool, str] = {}  # openmetrics -> the counts of every departed worker, merged
        self._departed: set[int] = set()

    def merge(self, answers: Sequence[Answer], openmetrics: bool) -> str:
        """The answers (all in one format) as one server's exposition."""
        with self._lock:
            texts, serving = [], []
            for answer in answers:
                if answer.worker in self._departed:  # already in the offset
                    continue
                if answer.text is not None:
                    self._last[answer.worker, openmetrics] = cumulative(answer.text)
                    texts.append(answer.text)
                    serving.append(answer.serving)
                elif (last := self._last.get((answer.worker, openmetrics))) is not None:
                    texts.append(last)
                    serving.append(False)
            gone = self._gone.get(openmetrics, "")
            fresh = [
                a.text for a in answers if a.text is not None and a.serving and a.worker not in self._departed
            ]
            if gone and fresh:  # drop the offset of versions every serving worker has unloaded
                gone = self._gone[openmetrics] = _without_versions_other_than(gone, _loaded_versions(fresh))
            return merge([*texts, gone], [*serving, False])

    def departed(self, worker: int) -> None:
        """The worker is gone: its last counts join the offset."""
        with self._lock:
            self._departed.add(worker)
            for openmetrics in (False, True):
                last = self._last.pop((worker, openmetrics), None)
                if last is not None:
                    self._gone[openmetrics] = cumulative(merge([self._gone.get(openmetrics, ""), last]))


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
