"""The protocol-neutral request path shared by every handler (seqserve.v1, and KServe V2 through its
data plane, serving.protocol.v2_dataplane).

Handlers turn their wire format into (model, version, texts) and call `InferenceService.classify`;
it validates, finds the model, queues the texts on the model's batcher and records request metrics.
Failures are `ServingError`s carrying a gRPC status code and a message a person can act on; the
handler only has to put them on the wire.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import grpc
import numpy as np

from serving import request_clock
from serving.batcher import (
    BatcherClosed,
    DeadlineExpired,
    QueueFull,
    deadline_reached,
    monotonic_deadline,
)
from serving.errors import ServingError
from serving.metrics import COMPARE_PAGE, UNRESOLVED, ModelLabels, ServerMetrics
from serving.model import ServedModel
from serving.registry import ModelNotFound, ModelRegistry
from serving.repository import InvalidModelName
from serving.settings import Settings
from serving.tracing import NO_TRACE, ServerTracing

log = logging.getLogger(__name__)


# Built per request: not frozen (a frozen dataclass's __init__ costs several times more).
@dataclass(slots=True)
class Classification:
    model: ServedModel
    probabilities: np.ndarray  # [len(texts), len(labels)]
    server_seconds: float  # from `classify` being called to its answer: checks, queue, batch, hand-offs
    queue_wait_seconds: float  # in the model's queue, until its batch formed
    compute_seconds: float  # its texts' share of its batch's tokenize + runtime time


class InferenceService:
    def __init__(
        self,
        registry: ModelRegistry,
        settings: Settings,
        metrics: ServerMetrics,
        tracing: ServerTracing | None = None,
    ) -> None:
        self._registry = registry
        self._settings = settings
        self._metrics = metrics
        self._tracing = tracing

    def lookup(self, name: str, version: int = 0) -> ServedModel:
        if version < 0:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"version {version} is negative; 0 = latest")
        try:
            return self._registry.resolve(name, version)
        except InvalidModelName as error:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
        except ModelNotFound as error:
            raise ServingError(grpc.StatusCode.NOT_FOUND, str(error)) from None

    def check_text_count(self, count: int) -> None:
        """The count limits alone: protocols that declare a count up front check it before decoding."""
        if count == 0:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "request has no texts; send at least one")
        if count > self._settings.max_texts_per_request:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request has {count} texts; the limit is {self._settings.max_texts_per_request} "
                "(--max-texts-per-request)",
            )

    def check_texts(self, texts: Sequence[str]) -> None:
        limits = self._settings
        self.check_text_count(len(texts))
        # A character is at most 4 bytes of UTF-8: only a text that could be over the limit is encoded.
        longest_safe = limits.max_text_bytes // 4
        for index, text in enumerate(texts):
            if len(text) <= longest_safe:
                continue
            size = len(text.encode("utf-8"))
            if size > limits.max_text_bytes:
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"text {index} is {size} bytes (UTF-8); the limit is {limits.max_text_bytes} "
                    "(--max-text-bytes)",
                )

    def refuse(self, name: str, version: int, error: ServingError, protocol: str) -> ServingError:
        """Count a request its handler rejected before `classify` (a malformed protocol message) as
        `classify` would; an unknown model outranks the malformed message. Returns the error to send."""
        labels = UNRESOLVED
        try:
            model = self.lookup(name, version)
        except ServingError as lookup_error:
            error = lookup_error
        else:
            labels = model.metrics.labels
            model.metrics.statistics.request_done(False, 0.0)
        self._metrics.count_request(labels, error.code.name, 0, protocol)
        return error

    async def classify(
        self, name: str, version: int, texts: Sequence[str], time_remaining: float | None, protocol: str
    ) -> Classification:
        """`protocol`: the API the request came in (serving.metrics.PROTOCOLS), for the request counter."""
        started = time.perf_counter()
        labels: ModelLabels = UNRESOLVED
        code = grpc.StatusCode.OK
        model: ServedModel | None = None
        try:
            model = self.lookup(name, version)
            labels = model.metrics.labels
            self.check_texts(texts)
            if log.isEnabledFor(logging.DEBUG):
                details = {"model": name, "version": model.version, "text_count": len(texts)}
                if self._settings.log_texts:
                    details["texts"] = list(texts)
                log.debug("classify", extra=details)
            trace = NO_TRACE if self._tracing is None else self._tracing.request(labels, len(texts))
            metrics = model.metrics
            assert model.batcher is not None  # set before the model enters a snapshot
            metrics.in_flight += 1
            try:
                result = await model.batcher.submit(list(texts), monotonic_deadline(time_remaining), trace)
            except Exception as error:  # CancelledError is not an Exception: it goes on as it is
                raise _batcher_error(model, error) from error
            finally:
                metrics.in_flight -= 1
            elapsed = time.perf_counter() - started
            request_clock.observe_when_answered(metrics.request_duration, trace.exemplar, elapsed)
            return Classification(model, result.rows, elapsed, result.queue_wait_s, result.compute_s)
        except ServingError as error:
            code = error.code
            raise
        except asyncio.CancelledError:
            # gRPC cancels the handler both when the client goes away and when its deadline passes
            overdue = time_remaining is not None and deadline_reached(
                time.perf_counter() - started, time_remaining
            )
            code = grpc.StatusCode.DEADLINE_EXCEEDED if overdue else grpc.StatusCode.CANCELLED
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL
            raise
        finally:
            self._metrics.count_request(labels, code.name, len(texts), protocol)
            if model is not None:
                model.metrics.statistics.request_done(
                    code == grpc.StatusCode.OK, time.perf_counter() - started
                )

    async def wait_for_queue_room(self, name: str, version: int = 0) -> None:
        """Until the model's queue can take one more request, for callers that can make their client
        wait (a stream that stops reading) instead of failing the request; woken when a request leaves
        the full queue. Returns at once for a model that is not loaded (its request fails)."""
        try:
            model = self._registry.resolve(name, version)
        except (InvalidModelName, ModelNotFound):
            return
        if model.batcher is not None:
            await model.batcher.wait_for_room()

    def check_rounds(self, rounds: int) -> None:
        """A compare's rounds: 0 (the message's default) means one; beyond the limit is refused."""
        limit = self._settings.max_compare_rounds
        if rounds < 0:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT, f"rounds is {rounds}; send 1 to {limit} (0 = 1)"
            )
        if rounds > limit:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"rounds is {rounds}; the limit is {limit} (--max-compare-rounds)",
            )

    async def compare(
        self, texts: Sequence[str], names: Sequence[str], time_remaining: float | None, rounds: int = 1
    ) -> list[Classification]:
        """The same texts through several models (all loaded ones when `names` is empty), one model after
        another: each model's figures (end to end, queue wait, compute) hold its own work alone, never a
        batch of another model of the same call, at the cost of the call taking their sum.

        Each model answers the texts `rounds` times in a row (0 = 1), every round from the version its
        first round resolved, and its figures are the medians over its rounds: its first call meets
        caches the models before it left cold, the next ones its own warm cost. `time_remaining` is the
        whole call's."""
        chosen = list(dict.fromkeys(names)) or self._registry.snapshot.names()
        for name in chosen:
            self.lookup(name)  # fail the whole call before any model runs
        self.check_texts(texts)
        self.check_rounds(rounds)
        started = time.perf_counter()

        def remaining() -> float | None:
            return None if time_remaining is None else time_remaining - (time.perf_counter() - started)

        results = []
        for name in chosen:
            first = await self.classify(name, 0, texts, remaining(), COMPARE_PAGE)
            answers = [first]
            for _ in range(1, rounds):
                version = first.model.version
                answers.append(await self.classify(name, version, texts, remaining(), COMPARE_PAGE))
            results.append(median_of_rounds(answers))
        return results


def median_of_rounds(answers: Sequence[Classification]) -> Classification:
    """One model's answer to a compare's rounds: the first round's probabilities (every round ran the
    same texts through the same version) with each figure's median over the rounds."""
    return replace(
        answers[0],
        server_seconds=statistics.median(a.server_seconds for a in answers),
        queue_wait_seconds=statistics.median(a.queue_wait_seconds for a in answers),
        compute_seconds=statistics.median(a.compute_seconds for a in answers),
    )


def _batcher_error(model: ServedModel, error: Exception) -> ServingError:
    """What a request's batcher raised, as the status its client gets (logged when the batch failed)."""
    if isinstance(error, QueueFull):
        assert model.batcher is not None
        return ServingError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"model {model.name!r} has {model.batcher.policy.max_queue_size} requests queued, the limit "
            "(--max-queue-size); retry with backoff",
        )
    if isinstance(error, DeadlineExpired):
        return ServingError(
            grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed while the request was queued"
        )
    if isinstance(error, BatcherClosed):
        return ServingError(
            grpc.StatusCode.UNAVAILABLE, f"model {model.name!r} version {model.version} is unloading"
        )
    log.exception("inference failed", extra={"model": model.name, "version": model.version})
    return ServingError(grpc.StatusCode.INTERNAL, f"inference failed: {error}")
