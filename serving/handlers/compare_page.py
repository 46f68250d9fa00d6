"""The compare page on the HTTP port: texts in, every loaded model's answer side by side.

- `GET /`: one static HTML file with its script (serving/handlers/static/compare.html), no build step
  and nothing fetched from elsewhere. `/?text=...` (repeatable) fills in the texts and submits them.
- `POST /v1/compare`: seqserve.v1 `Compare` over HTTP, in the protobuf JSON mapping of its messages
  (`{"texts": [...], "models": [...]}` -> `{"results": [...]}`), through `InferenceService.compare`
  like the gRPC method.
- `GET /v1/latency`: each model's request-duration p50 and p99 from the server's own histograms
  (seqserve_request_duration_seconds, read from its registry), which the page polls. The window
  reaches back to the oldest histogram snapshot this route keeps (one per call at most every 5 s, none
  older than a minute once a newer one exists): about a minute while the page polls, and it says how
  long; with no request in it, the figures since start are shown.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from importlib import resources

from aiohttp import web
from google.protobuf import json_format

from seqserve.histograms import Histogram, per_model
from seqserve.metric_names import REQUEST_DURATION
from seqserve.v1 import classifier_pb2
from serving.handlers.classifier import compare_response
from serving.handlers.operations import (
    JSON,
    Answer,
    ApiRoute,
    Component,
    Operation,
    Parameter,
    ProtoMessage,
    json_answer,
)
from serving.handlers.proto_schema import JsonMapping
from serving.handlers.rest import json_message, json_response
from serving.inference import InferenceService
from serving.metrics import UNKNOWN_MODEL, ServerMetrics
from serving.request_bodies import request_body

PAGE = resources.files("serving.handlers").joinpath("static/compare.html")
SNAPSHOT_EVERY_S = 5.0
WINDOW_S = 60.0
COMPARE_TIMEOUT_S = 30.0
TAG = "Compare page"
# Read by the page's script, not by the server.
PAGE_PARAMETERS = (
    Parameter(
        "text",
        "query",
        {"type": "array", "items": {"type": "string"}},
        "Texts to fill in and compare at once.",
    ),
    Parameter("explain", "query", {"type": "string"}, "A text to fill in and explain at once."),
)
COMPARE_REQUEST = ProtoMessage(classifier_pb2.CompareRequest.DESCRIPTOR, JsonMapping(reading=True))
COMPARE_RESPONSE = ProtoMessage(classifier_pb2.CompareResponse.DESCRIPTOR)
_MILLISECONDS = {"type": ["number", "null"], "description": "null: no request yet."}
LATENCY = Component(
    "latency_response",
    {
        "type": "object",
        "properties": {
            "models": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "model": {"type": "string"},
                        "requests": {"type": "integer"},
                        "p50_ms": _MILLISECONDS,
                        "p99_ms": _MILLISECONDS,
                        "window_s": {
                            "type": ["number", "null"],
                            "description": "The window's seconds; null: the figures since start.",
                        },
                    },
                    "required": ["model", "requests", "p50_ms", "p99_ms", "window_s"],
                },
            }
        },
        "required": ["models"],
    },
)


# model -> its request-duration histogram, versions and runtimes summed
PerModel = dict[str, Histogram]


def request_durations(metrics: ServerMetrics) -> PerModel:
    """Every model's seqserve_request_duration_seconds, read from the registry's samples."""
    return per_model(
        REQUEST_DURATION,
        (sample for family in metrics.request_duration.collect() for sample in family.samples),
    )


class LatencyWindow:
    """Request-duration quantiles per model over a sliding window of histogram snapshots."""

    def __init__(self, metrics: ServerMetrics, clock: Callable[[], float] = time.monotonic) -> None:
        self._metrics = metrics
        self._clock = clock
        self._snapshots: collections.deque[tuple[float, PerModel]] = collections.deque()

    def figures(self) -> list[dict[str, object]]:
        now = self._clock()
        current = request_durations(self._metrics)
        if not self._snapshots or now - self._snapshots[-1][0] >= SNAPSHOT_EVERY_S:
            self._snapshots.append((now, current))
        while len(self._snapshots) > 1 and now - self._snapshots[1][0] >= WINDOW_S:
            self._snapshots.popleft()
        taken, oldest = self._snapshots[0]
        rows = []
        for model, total in sorted(current.items()):
            if model == UNKNOWN_MODEL:
                continue
            window = total.minus(oldest.get(model))
            seconds = now - taken
            if window.count == 0:
                window, seconds = total, None
            rows.append(_row(model, window, seconds))
        return rows


def _row(model: str, histogram: Histogram, window_s: float | None) -> dict[str, object]:
    def ms(q: float) -> float | None:
        value = histogram.quantile(q)
        return None if value != value else round(value * 1e3, 3)  # NaN: no observation

    return {
        "model": model,
        "requests": int(histogram.count),
        "p50_ms": ms(0.5),
        "p99_ms": ms(0.99),
        "window_s": None if window_s is None else round(window_s, 1),
    }


class ComparePage:
    def __init__(self, service: InferenceService, metrics: ServerMetrics) -> None:
        self._service = service
        self._latency = LatencyWindow(metrics)

    def routes(self) -> list[ApiRoute]:
        return [
            ApiRoute(
                "GET",
                "/",
                self.page,
                Operation(
                    "compare_page",
                    "The compare page",
                    TAG,
                    {
                        200: Answer(
                            "The page (one HTML file with its script).", {"text/html": {"type": "string"}}
                        )
                    },
                    parameters=PAGE_PARAMETERS,
                ),
            ),
            ApiRoute(
                "POST",
                "/v1/compare",
                self.compare,
                Operation(
                    "compare",
                    "Every model's answer to the same texts",
                    TAG,
                    {200: json_answer("One result per model, in name order.", COMPARE_RESPONSE)},
                    errors=(400, 404, 429, 504),
                    description="seqserve.v1 Compare in the protobuf JSON mapping; no models: every one.",
                    body={JSON: COMPARE_REQUEST},
                    body_example={"texts": ["area man wins award"]},
                ),
            ),
            ApiRoute(
                "GET",
                "/v1/latency",
                self.latency,
                Operation(
                    "latency",
                    "Each model's request time",
                    TAG,
                    {200: json_answer("p50 and p99 over about the last minute.", LATENCY)},
                ),
            ),
        ]

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(body=PAGE.read_bytes(), content_type="text/html", charset="utf-8")

    async def compare(self, request: web.Request) -> web.Response:
        message = json_message(
            request_body(request), classifier_pb2.CompareRequest(), '{"texts": [...], "models": [...]}'
        )
        results = await self._service.compare(message.texts, message.models, COMPARE_TIMEOUT_S)
        body = json_format.MessageToJson(compare_response(results), indent=None)
        return web.Response(text=body, content_type="application/json")

    async def latency(self, request: web.Request) -> web.Response:
        return json_response({"models": self._latency.figures()})
