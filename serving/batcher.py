"""Dynamic batching: requests queue per model; a batch runs once for all of them in a thread pool.

The batcher knows neither protocols nor models. A request is a list of items (texts); a batch is the
concatenation of whole requests, handed to `run_batch(items) -> rows` in the executor, and row i of
the result belongs to item i. Each request gets back exactly its rows.

Batch formation: take the oldest request and every queued request that still fits within
`max_batch_size` items. If the batch is not full and another batch of this model is running, wait
for company until `max_queue_delay` has passed since the oldest request arrived (as Triton's dynamic
batcher does). If nothing of this model is running, waiting would only add latency: the batch runs at
once, and under load requests pile up behind it and form the next batch by themselves. A request
never splits across batches; one larger than `max_batch_size` runs alone. `max_queue_delay = 0`
disables batching: every request runs alone.

The queue is bounded (in requests). When full, `submit` fails at once with `QueueFull` (back-pressure
the client can see) instead of growing latency without limit. A request whose deadline passes while
it waits is dropped before it runs (its caller is gone) and reported via `observer.expired`.

Up to `max_concurrent_batches` batches of one model run at once; while they run, new requests pile up
in the queue and form larger batches, so throughput grows with load without any extra waiting.

With tracing on (`tracing`, serving.tracing.BatchTracing), each request carries its trace from
`submit`, and a batch with a sampled request in it records their queue waits and runs in a span of
its own linked to each of them.

Where a batch runs: in the executor, except a batch of at most `inline_max_items` items on a model
with nothing else running or queued whose small batches are known to be fast (`inline_max_s`), which
runs on the event loop itself. For one small request the
hand-off costs more than the work: submitting to the pool, waking its thread, and waking the loop
again to deliver the result took more CPU than tokenizing and running a small model (py-spy, one
request at a time). Under load the queue is rarely empty, so batches still form and run in threads,
and the loop is never blocked while requests wait.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from serving.tracing import BatchTracing

# A client's own deadline timer fires slightly before the server's (the server starts counting the
# timeout when the request has crossed the wire), so the client's cancellation often arrives just before
# the server's deadline. A cancellation this close to the deadline is the deadline passing.
DEADLINE_SLACK_S = 0.01
SMALL_BATCH_WEIGHT = 0.2  # of the newest time in the running average of small batches' times


def deadline_reached(now: float, deadline: float | None) -> bool:
    return deadline is not None and now >= deadline - DEADLINE_SLACK_S


class QueueFull(Exception):
    """The model's queue holds max_queue_size requests already."""


class DeadlineExpired(Exception):
    """The request's deadline passed while it waited in the queue; it was not run."""


class BatcherClosed(Exception):
    """The batcher is shutting down and takes no new requests."""


class BatchObserver(Protocol):
    """What the batcher reports; serving.metrics implements it with Prometheus, tests with lists."""

    def queue_depth(self, requests: int) -> None: ...
    def queue_wait(self, seconds: float) -> None: ...
    def batch_formed(self, items: int) -> None: ...
    def expired(self, requests: int) -> None: ...


class NullObserver:
    def queue_depth(self, requests: int) -> None:
        pass

    def queue_wait(self, seconds: float) -> None:
        pass

    def batch_formed(self, items: int) -> None:
        pass

    def expired(self, requests: int) -> None:
        pass


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int
    max_queue_delay_s: float
    max_queue_size: int
    max_concurrent_batches: int = 1
    # A batch of at most this many items runs on the event loop itself when nothing else of the model
    # is running or queued and such batches have taken at most `inline_max_s` (a running average of
    # their measured times): for one small request of a fast model the hand-off to a thread and back
    # costs more than the work, while a slow model must never hold the loop. 0: always the executor.
    inline_max_items: int = 0
    inline_max_s: float = 0.0005


@dataclass(slots=True)
class _Request:
    items: Sequence[Any]
    future: asyncio.Future[Any]
    enqueued_at: float
    deadline: float | None  # event-loop time, None = no deadline
    size: int
    trace: Any = None  # the request's trace (serving.tracing.RequestTrace), with tracing on
    started: bool = False  # handed to run_batch


class Batcher:
    """Driven by events, not by a task of its own: requests arriving (once per event-loop iteration, so
    that requests arriving together form one batch), a batch finishing and a delay running out each
    look at the queue once (`_dispatch`) and start whatever batches are due. A request on an idle model
    thus reaches the executor in the loop iteration it arrived in, with no task switch on the way."""

    def __init__(
        self,
        run_batch: Callable[[list[Any]], Any],
        policy: BatchPolicy,
        executor: Executor | None,
        observer: BatchObserver | None = None,
        name: str = "batcher",
        tracing: BatchTracing | None = None,
    ) -> None:
        self._run_batch = run_batch
        self._tracing = tracing
        self._policy = policy
        self._executor = executor
        self._observer = observer or NullObserver()
        self._name = name
        self._queue: collections.deque[_Request] = collections.deque()
        self._running = 0  # batches in the executor
        self._timer: asyncio.TimerHandle | None = None  # a partial batch's flush, while it waits for company
        self._dispatch_due = False  # a `_dispatch` is scheduled for this loop iteration
        self._closed = False
        self._drained = asyncio.Event()  # closed, nothing queued, nothing running
        self._small_batch_s: float | None = None  # running average time of batches up to inline_max_items

    @property
    def policy(self) -> BatchPolicy:
        return self._policy

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def submit(self, items: Sequence[Any], deadline: float | None = None, trace: Any = None) -> Any:
        """Queue one request; returns its rows of the batch result (same order as `items`)."""
        if self._closed:
            raise BatcherClosed(f"{self._name} is shutting down")
        if len(self._queue) >= self._policy.max_queue_size:
            raise QueueFull(f"{self._name} queue holds {self._policy.max_queue_size} requests")
        loop = asyncio.get_running_loop()
        request = _Request(items, loop.create_future(), loop.time(), deadline, len(items), trace)
        self._queue.append(request)
        self._observer.queue_depth(len(self._queue))
        if not self._dispatch_due:
            self._dispatch_due = True
            loop.call_soon(self._dispatch)
        try:
            return await request.future
        except asyncio.CancelledError:
            # gRPC cancels the handler when the client's deadline passes; if that happened while the
            # request was still queued, it was dropped unrun and counts as expired.
            if not request.started and deadline_reached(loop.time(), request.deadline):
                self._observer.expired(1)
            raise

    async def close(self) -> None:
        """Stop taking requests, run everything already queued, wait for running batches."""
        self._closed = True
        self._dispatch()
        self._check_drained()
        await self._drained.wait()

    def _live(self, request: _Request, now: float) -> bool:
        """Still worth running; an expired one is failed here (a done future: its caller gave up)."""
        if request.future.done():
            return False
        if request.deadline is not None and now >= request.deadline:
            request.future.set_exception(DeadlineExpired("deadline passed while queued"))
            self._observer.expired(1)
            return False
        return True

    def _next_batch(self, now: float) -> tuple[list[_Request], int, int]:
        """The live requests from the queue's head that make one batch, their item count, and how many
        queue entries (dead ones included) they span."""
        policy = self._policy
        batch: list[_Request] = []
        size = span = 0
        for request in self._queue:
            if not self._live(request, now):
                span += 1
                continue
            if batch and (policy.max_queue_delay_s <= 0 or size + request.size > policy.max_batch_size):
                break
            batch.append(request)
            size += request.size
            span += 1
            if size >= policy.max_batch_size:
                break
        return batch, size, span

    def _dispatch(self) -> None:
        """Start every batch that is due now; a partial one on a busy model waits for its flush time."""
        self._dispatch_due = False
        policy = self._policy
        loop = asyncio.get_running_loop()
        while self._queue and self._running < policy.max_concurrent_batches:
            now = loop.time()
            batch, size, span = self._next_batch(now)
            if batch and size < policy.max_batch_size and self._running and not self._closed:
                flush_at = batch[0].enqueued_at + policy.max_queue_delay_s
                if now < flush_at:  # another batch runs: wait for company until the delay is over
                    if self._timer is None or self._timer.when() != flush_at:
                        if self._timer is not None:
                            self._timer.cancel()
                        self._timer = loop.call_at(flush_at, self._flush)
                    return
            for _ in range(span):
                self._queue.popleft()
            self._observer.queue_depth(len(self._queue))
            if batch:
                self._start(batch, size, now)
        self._check_drained()

    def _flush(self) -> None:
        self._timer = None
        self._dispatch()

    def _start(self, batch: list[_Request], size: int, now: float) -> None:
        for request in batch:
            self._observer.queue_wait(now - request.enqueued_at)
            request.started = True
        items = list(batch[0].items) if len(batch) == 1 else [item for r in batch for item in r.items]
        self._observer.batch_formed(size)
        self._running += 1
        small = size <= self._policy.inline_max_items
        run = self._timed if small else self._run_batch
        if self._tracing is not None:
            run = self._tracing.traced_run(run, [(r.trace, r.enqueued_at) for r in batch], now)
        if small and self._running == 1 and not self._queue and self._fast():
            try:
                rows = run(items)
            except Exception as error:
                self._finished(batch, None, error)
            else:
                self._finished(batch, rows, None)
            return
        done = asyncio.get_running_loop().run_in_executor(self._executor, run, items)
        done.add_done_callback(lambda future: self._executed(batch, future))

    def _fast(self) -> bool:
        """Small batches are known to take at most inline_max_s (unknown: not yet)."""
        return self._small_batch_s is not None and self._small_batch_s <= self._policy.inline_max_s

    def _timed(self, items: list[Any]) -> Any:
        """run_batch for a small batch, timed (a float written from the pool thread is safe)."""
        started = time.perf_counter()
        rows = self._run_batch(items)
        took = time.perf_counter() - started
        average = self._small_batch_s
        self._small_batch_s = took if average is None else average + SMALL_BATCH_WEIGHT * (took - average)
        return rows

    def _executed(self, batch: list[_Request], future: asyncio.Future[Any]) -> None:
        if future.cancelled():  # the executor shut down under it
            for request in batch:
                request.future.cancel()
            self._finished(batch, None, None)
        elif (error := future.exception()) is not None:
            self._finished(batch, None, error)
        else:
            self._finished(batch, future.result(), None)

    def _finished(self, batch: list[_Request], rows: Any, error: BaseException | None) -> None:
        """Each request of the batch gets its rows, or the batch's error."""
        self._running -= 1
        start = 0
        for request in batch:
            if not request.future.done():
                if error is None:
                    request.future.set_result(rows[start : start + request.size])
                else:
                    request.future.set_exception(error)
            start += request.size
        self._dispatch()

    def _check_drained(self) -> None:
        if self._closed and not self._queue and not self._running:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._drained.set()


def monotonic_deadline(seconds_remaining: float | None) -> float | None:
    """A caller's remaining time -> an absolute deadline on the running loop's clock."""
    if seconds_remaining is None:
        return None
    return asyncio.get_running_loop().time() + seconds_remaining
