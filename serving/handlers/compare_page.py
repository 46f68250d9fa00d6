"""The compare page on the HTTP port: texts in, every loaded model's answer side by side.

- `GET /`: one static HTML file with its script (serving/handlers/static/compare.html), no build step
  and nothing fetched from elsewhere. `/?text=...` (repeatable) fills in the texts and submits them.
- `POST /v1/compare`: seqserve.v1 `Compare` over HTTP, in the protobuf JSON mapping of its messages
  (`{"texts": [...], "models": [...], "rounds": N}` -> `{"results": [...]}`), through
  `InferenceService.compare` like the gRPC method. The page asks for PAGE_ROUNDS rounds unless told
  otherwise: each model answers the texts that many times in a row, and its figures are the medians, so
  a model's first call, with the caches the models before it left cold, does not set them.
- `GET /v1/latency`: each model's request-duration p50 and p99 (seqserve_request_duration_seconds) and
  its compute per text (seqserve_compute_seconds_total over seqserve_compute_texts_total), from the
  server's own registry, which the page polls; with each model's architecture, dataset and test accuracy
  from its config (the training record of the version that answers), for the page's speed/accuracy plot.
  The window reaches back to the oldest snapshot of the metrics this route keeps (one per call at most
  every 5 s, none older than a minute once a newer one exists): about a minute while the page polls,
  and it says how long; with no request in it, the figures since start are shown.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from aiohttp import web
from google.protobuf import json_format

from seqserve.compute import ComputeTotals, compute_per_model
from seqserve.histograms import Histogram, per_model
from seqserve.metric_names import REQUEST_DURATION
from seqserve.v1 import classifier_pb2
from serving.errors import ServingError
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
PAGE_ROUNDS = 5  # the value of the page's rounds field (static/compare.html) as it loads
TAG = "Compare page"
# Read by the page's script, not by the server.
PAGE_PARAMETERS = (
    Parameter(
        "text",
        "query",
        {"type": "array", "items": {"type": "string"}},
        "Texts to fill in and compare at once.",
    ),
    Parameter(
        "runs",
        "query",
        {"type": "integer", "minimum": 1, "maximum": 50},
        "Compares to run one after another; each model's figures are its medians (default 5).",
    ),
    Parameter(
        "rounds",
        "query",
        {"type": "integer", "minimum": 1},
        f"The rounds of each compare (POST /v1/compare `rounds`): each model answers the texts this many "
        f"times in a row and the server returns its medians (default {PAGE_ROUNDS}; at most the server's "
        "--max-compare-rounds).",
    ),
    Parameter("explain", "query", {"type": "string"}, "A text to fill in and explain at once."),
)
COMPARE_REQUEST = ProtoMessage(classifier_pb2.CompareRequest.DESCRIPTOR, JsonMapping(reading=True))
COMPARE_RESPONSE = ProtoMessage(classifier_pb2.CompareResponse.DESCRIPTOR)
_MILLISECONDS = {"type": ["number", "null"], "description": "null: no request yet."}
_TRAINING = "null: the model was unloaded since its figures were read"
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
                        "compute_per_text_ms": {
                            "type": ["number", "null"],
                            "description": "Tokenize + runtime time of the executed batches over their "
                            "texts; null: nothing computed yet.",
                        },
                        "computed_texts": {"type": "integer"},
                        "window_s": {
                            "type": ["number", "null"],
                            "description": "The window's seconds; null: the figures since start.",
                        },
                        "architecture": {"type": ["string", "null"], "description": _TRAINING + "."},
                        "dataset": {"type": ["string", "null"], "description": _TRAINING + "."},
                        "test_accuracy": {
                            "type": ["number", "null"],
                            "description": _TRAINING + ", or its config records none.",
                        },
                    },
                    "required": [
                        "model",
                        "requests",
                        "p50_ms",
                        "p99_ms",
                        "compute_per_text_ms",
                        "computed_texts",
                        "window_s",
                        "architecture",
                        "dataset",
                        "test_accuracy",
                    ],
                },
            }
        },
        "required": ["models"],
    },
)


@dataclass(frozen=True)
class _Reading:
    """One model's request-duration histogram and compute counters, versions and runtimes summed."""

    requests: Histogram
    compute: ComputeTotals


def readings(metrics: ServerMetrics) -> dict[str, _Reading]:
    """Every model's figures, read from the registry's samples."""
    durations = per_model(
        REQUEST_DURATION,
        (sample for family in metrics.request_duration.collect() for sample in family.samples),
    )
    compute = compute_per_model(
        sample
        for counter in (metrics.compute_seconds, metrics.compute_texts)
        for family in counter.collect()
        for sample in family.samples
    )
    return {model: _Reading(durations[model], compute.get(model, ComputeTotals())) for model in durations}


class LatencyWindow:
    """Request-duration quantiles and compute per text per model over a sliding window of snapshots."""

    def __init__(self, metrics: ServerMetrics, clock: Callable[[], float] = time.monotonic) -> None:
        self._metrics = metrics
        self._clock = clock
        self._snapshots: collections.deque[tuple[float, dict[str, _Reading]]] = collections.deque()

    def figures(self) -> list[dict[str, object]]:
        now = self._clock()
        current = readings(self._metrics)
        if not self._snapshots or now - self._snapshots[-1][0] >= SNAPSHOT_EVERY_S:
            self._snapshots.append((now, current))
        while len(self._snapshots) > 1 and now - self._snapshots[1][0] >= WINDOW_S:
            self._snapshots.popleft()
        taken, oldest = self._snapshots[0]
        rows = []
        for model, total in sorted(current.items()):
            if model == UNKNOWN_MODEL:
                continue
            before = oldest.get(model)
            requests = total.requests.minus(None if before is None else before.requests)
            compute = total.compute.minus(None if before is None else before.compute)
            seconds: float | None = now - taken
            if requests.count == 0:
                requests, compute, seconds = total.requests, total.compute, None
            rows.append(_row(model, requests, compute, seconds))
        return rows


def _ms(seconds: float) -> float | None:
    return None if seconds != seconds else round(seconds * 1e3, 4)  # NaN: nothing observed


def _row(
    model: str, requests: Histogram, compute: ComputeTotals, window_s: float | None
) -> dict[str, object]:
    return {
        "model": model,
        "requests": int(requests.count),
        "p50_ms": _ms(requests.quantile(0.5)),
        "p99_ms": _ms(requests.quantile(0.99)),
        "compute_per_text_ms": _ms(compute.per_text_s),
        "computed_texts": int(compute.texts),
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
                    description="seqserve.v1 Compare in the protobuf JSON mapping; no models: every one. "
                    "`rounds` (0 or absent: 1; at most the server's --max-compare-rounds, else 400): each "
                    "model answers the texts that many times in a row before the next model's turn, and "
                    "its figures (end to end, queue wait, compute per text) are the medians over its "
                    "rounds; the answer is one result per model, its first round's. The call's "
                    f"{COMPARE_TIMEOUT_S:.0f} s deadline covers every round.",
                    body={JSON: COMPARE_REQUEST},
                    body_example={"texts": ["area man wins award"], "rounds": PAGE_ROUNDS},
                ),
            ),
            ApiRoute(
                "GET",
                "/v1/latency",
                self.latency,
                Operation(
                    "latency",
                    "Each model's request time and compute per text, beside its test accuracy",
                    TAG,
                    {200: json_answer("The figures over about the last minute.", LATENCY)},
                ),
            ),
        ]

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(body=PAGE.read_bytes(), content_type="text/html", charset="utf-8")

    async def compare(self, request: web.Request) -> web.Response:
        message = json_message(
            request_body(request),
            classifier_pb2.CompareRequest(),
            '{"texts": [...], "models": [...], "rounds": N}',
        )
        results = await self._service.compare(
            message.texts, message.models, COMPARE_TIMEOUT_S, message.rounds
        )
        body = json_format.MessageToJson(compare_response(results), indent=None)
        return web.Response(text=body, content_type="application/json")

    async def latency(self, request: web.Request) -> web.Response:
        rows = self._latency.figures()
        return json_response({"models": [row | self._training(str(row["model"])) for row in rows]})

    def _training(self, name: str) -> dict[str, object]:
        """What the plot draws beside the speed: the architecture and the test accuracy (None when not
        recorded) of the version that answers."""
        try:
            config = self._service.lookup(name).config
        except ServingError:  # unloaded since its series were read
            return {"architecture": None, "dataset": None, "test_accuracy": None}
        accuracy = config.training.test_accuracy
        return {
            "architecture": config.architecture,
            "dataset": config.dataset,
            "test_accuracy": round(accuracy, 4) if accuracy > 0 else None,
        }
