"""Prometheus metrics: one CollectorRegistry per server, served on its own HTTP port at /metrics.

Names are stable (dashboards and alerts depend on them) and defined once, in seqserve.metric_names;
durations are in seconds. Every series carries
`model`, `version` and `runtime`, taken only from models the registry has loaded. A request naming an
unknown model is counted under model="_unknown" (a name no real model can have: names start with
[a-z0-9]), so clients cannot create series at will. No label ever holds request data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

from seqserve import metric_names as names
from serving.metrics_http import MetricsHttpServer, serve_metrics_http
from serving.settings import Settings
from serving.statistics import ModelStatistics


class QueueHolder(Protocol):
    """What the queue-depth gauge reads (serving.batcher.Batcher)."""

    @property
    def queued(self) -> int: ...


MODEL_LABELS = ("model", "version", "runtime")
UNKNOWN_MODEL = "_unknown"
# The request counter's `protocol` label: the API a request came in, whichever wire (gRPC or REST).
SEQSERVE_V1 = "seqserve_v1"
KSERVE_V2 = "kserve_v2"
TF_SERVING = "tf_serving"
COMPARE_PAGE = "compare_page"
PROTOCOLS = (SEQSERVE_V1, KSERVE_V2, TF_SERVING, COMPARE_PAGE)

# 50 µs .. 5 s, roughly 1-2.5-5 per decade.
DURATION_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
VARIANT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True)
class ModelLabels:
    model: str
    version: str
    runtime: str

    def values(self) -> tuple[str, str, str]:
        return (self.model, self.version, self.runtime)


UNRESOLVED = ModelLabels(UNKNOWN_MODEL, "", "")


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.request_duration = Histogram(
            names.REQUEST_DURATION,
            "End-to-end time of successful inference requests: validation, queue, tokenize, inference, reply",
            MODEL_LABELS, buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue_wait = Histogram(
            names.QUEUE_WAIT, "Time a request waited in its model's queue before its batch ran",
            MODEL_LABELS, buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.tokenize_duration = Histogram(
            names.TOKENIZE_DURATION, "Time to tokenize one batch",
            MODEL_LABELS, buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.inference_duration = Histogram(
            names.INFERENCE_DURATION, "Time the runtime took for one batch",
            MODEL_LABELS, buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_size = Histogram(
            names.BATCH_SIZE, "Texts per executed batch",
            MODEL_LABELS, buckets=BATCH_SIZE_BUCKETS, registry=r,
        )  # fmt: skip
        self.compute_seconds = Counter(
            names.COMPUTE_SECONDS,
            "Tokenize + runtime seconds of executed batches (over compute_texts_total: compute per text)",
            MODEL_LABELS, registry=r,
        )  # fmt: skip
        self.compute_texts = Counter(
            names.COMPUTE_TEXTS, "Texts in executed batches", MODEL_LABELS, registry=r
        )
        self.requests = Counter(
            names.REQUESTS, "Inference requests by final gRPC status code and API (protocol)",
            (*MODEL_LABELS, "code", "protocol"), registry=r,
        )  # fmt: skip
        self.texts = Counter(
            names.TEXTS, "Texts in inference requests by final gRPC status code",
            (*MODEL_LABELS, "code"), registry=r,
        )  # fmt: skip
        self.queue_expired = Counter(
            names.QUEUE_EXPIRED, "Requests dropped unrun because their deadline passed in the queue",
            MODEL_LABELS, registry=r,
        )  # fmt: skip
        self.in_flight = Gauge(
            names.REQUESTS_IN_FLIGHT, "Inference requests being handled now",
            MODEL_LABELS, registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge(
            names.QUEUE_DEPTH, "Requests waiting in the model's queue", MODEL_LABELS, registry=r
        )
        self.model_ready = Gauge(
            names.MODEL_READY, "1 when the model version is loaded, warm and serving",
            MODEL_LABELS, registry=r,
        )  # fmt: skip

        self.explain_duration = Histogram(
            names.EXPLAIN_DURATION, "Time to explain one text with one model (split, variants, run)",
            MODEL_LABELS, buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.explain_variants = Histogram(
            names.EXPLAIN_VARIANTS, "Rows of one explanation's model call (1 + seen words)",
            MODEL_LABELS, buckets=VARIANT_BUCKETS, registry=r,
        )  # fmt: skip

        self._request_series: dict[tuple[ModelLabels, str, str], tuple[Counter, Counter]] = {}

    def for_model(self, labels: ModelLabels) -> ModelMetrics:
        return ModelMetrics(self, labels)

    def count_request(self, labels: ModelLabels, code: str, texts: int, protocol: str) -> None:
        """`protocol`: the API the request came in (PROTOCOLS)."""
        series = self._request_series.get((labels, code, protocol))
        if series is None:  # `.labels()` validates and locks on every call: bind each pair once
            series = self._request_series[labels, code, protocol] = (
                self.requests.labels(*labels.values(), code, protocol),
                self.texts.labels(*labels.values(), code),
            )
        series[0].inc()
        series[1].inc(texts)

    def remove_requests(self, labels: ModelLabels) -> None:
        """Drop the request and text counters of an unloaded version (every code and protocol)."""
        keys = [key for key in self._request_series if key[0] == labels]
        for _, code, protocol in keys:
            del self._request_series[labels, code, protocol]
            self.requests.remove(*labels.values(), code, protocol)
        for code in {code for _, code, _ in keys}:
            self.texts.remove(*labels.values(), code)

    def serve_http(self, host: str, port: int, settings: Settings) -> tuple[MetricsHttpServer, int]:
        """Start the /metrics HTTP server (serving.metrics_http) in a daemon thread, answering in the
        format the scraper's Accept header asks for (OpenMetrics or the text format); returns (server,
        bound port)."""

        def scrape(accept: str) -> tuple[str, bytes]:
            encode, content_type = choose_encoder(accept)
            return content_type, encode(self.registry)

        server = serve_metrics_http((host, port), settings, scrape)
        return server, server.port


class ModelMetrics:
    """The metrics of one model version, labels bound once; also the batcher's BatchObserver. Its
    `statistics` are the same events counted the way KServe V2 statistics report them."""

    def __init__(self, metrics: ServerMetrics, labels: ModelLabels) -> None:
        self._metrics = metrics
        self.labels = labels
        values = labels.values()
        self.request_duration = metrics.request_duration.labels(*values)
        self.in_flight = 0  # requests of this version inside `classify`, read by its gauge when scraped
        metrics.in_flight.labels(*values).set_function(lambda: self.in_flight)
        self._queue_wait = metrics.queue_wait.labels(*values)
        self._queue_depth = metrics.queue_depth.labels(*values)
        self._batch_size = metrics.batch_size.labels(*values)
        self._expired = metrics.queue_expired.labels(*values)
        self.tokenize_duration = metrics.tokenize_duration.labels(*values)
        self.inference_duration = metrics.inference_duration.labels(*values)
        self._compute_seconds = metrics.compute_seconds.labels(*values)
        self._compute_texts = metrics.compute_texts.labels(*values)
        self._ready = metrics.model_ready.labels(*values)
        self.explain_duration = metrics.explain_duration.labels(*values)
        self.explain_variants = metrics.explain_variants.labels(*values)
        self.statistics = ModelStatistics()

    def watch_queue(self, batcher: QueueHolder) -> None:
        """The queue-depth gauge reads the batcher's queue when it is scraped, not on every change."""
        self._queue_depth.set_function(lambda: batcher.queued)

    # BatchObserver
    def queue_wait(self, seconds: float) -> None:
        self._queue_wait.observe(seconds)
        self.statistics.queued(seconds)

    def batch_formed(self, items: int) -> None:
        self._batch_size.observe(items)

    def expired(self, requests: int) -> None:
        self._expired.inc(requests)

    def computed(self, texts: int, seconds: float) -> None:
        """One executed batch: its texts and its tokenize + runtime time."""
        self._compute_texts.inc(texts)
        self._compute_seconds.inc(seconds)

    def set_ready(self, ready: bool) -> None:
        self._ready.set(1 if ready else 0)

    def remove(self) -> None:
        """Drop this version's series once it is unloaded, so reloads do not accumulate them."""
        values = self.labels.values()
        for metric in (
            self._metrics.request_duration, self._metrics.queue_wait, self._metrics.tokenize_duration,
            self._metrics.inference_duration, self._metrics.compute_seconds, self._metrics.compute_texts,
            self._metrics.batch_size, self._metrics.queue_expired,
            self._metrics.in_flight, self._metrics.queue_depth, self._metrics.model_ready,
            self._metrics.explain_duration, self._metrics.explain_variants,
        ):  # fmt: skip
            metric.remove(*values)
        self._metrics.remove_requests(self.labels)
