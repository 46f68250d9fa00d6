"""Dynamic batching: requests queue per model; a batch runs once for all of them.

The batcher knows neither protocols nor models. A request is a list of items (texts); a batch is the
concatenation of whole requests, handed to a `BatchWork` in three steps: `prepare(items)` on the event
loop (all of the batch's Python: tokenizing, padding), `execute(prepared)` on an inference thread (the
runtime call, which releases the GIL; serving.inference_pool), and `finish(prepared, output, timing)`
back on the loop (the rows, the batch's metrics). Row i of the result belongs to item i, and each
request gets back exactly its rows, with its queue wait and its share of the batch's compute time
(`BatchResult`). One crossing to a thread and one back per batch, whatever its size.

Batch formation: take the oldest request and every queued request that still fits within
`max_batch_size` items. Requests arriving in one event-loop iteration are looked at once, together
(`_dispatch` is scheduled once per iteration). If the batch is not full and another batch of this model
is running, wait for company until `max_queue_delay` has passed since the oldest request arrived (as
Triton's dynamic batcher does), and beyond that for as long as every running batch of this model has
finished its runtime call and only waits for the loop to take its result: that batch's end starts the
next one at once, with everything that queued meanwhile, where starting another beside it would split
the same requests into two smaller batches and pay a batch's fixed cost twice (under load the loop takes
a fast model's result later than the delay). A second batch of one model runs beside the first only
while the first is still computing (a slow model). If nothing of this model is running, waiting
would only add latency: the batch runs at once, and under load requests pile up behind it and form the
next batch by themselves. A batch forms only when an inference thread is free for it
(`InferencePool.try_take`): until then its requests stay in the queue, where more can join them and
deadlines are still checked. A request never splits across batches; one larger than `max_batch_size`
runs alone. `max_queue_delay = 0` disables batching: every request runs alone.

The queue is bounded (in requests). When full, `submit` fails at once with `QueueFull` (back-pressure
the client can see) instead of growing latency without limit; a caller that can make its own client
wait instead (a stream that stops reading) awaits `wait_for_room`. A request whose caller is cancelled
leaves the queue at once; one whose deadline passes while it waits is dropped before it runs (its caller
is gone) and reported via `observer.expired`.

Up to `max_concurrent_batches` batches of one model run at once; while they run, new requests pile up
in the queue and form larger batches, so throughput grows with load without any extra waiting.

With tracing on (`tracing`, serving.tracing.BatchTracing), each request carries its trace from
`submit`, and a batch with a sampled request in it records their queue waits on their spans and its
stages on a span of its own linked to each of them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from serving.batch_timing import BatchTiming
from serving.inference_pool import InferencePool

if TYPE_CHECKING:
    from serving.tracing import BatchTracing, Exemplar

# A client's own deadline timer fires before the server's: the server starts counting the timeout when
# the request has crossed the wire and reached it, which on a busy machine is tens of milliseconds
# later. So the client's cancellation arrives before the server's deadline; one this close to it is
# the deadline passing.
DEADLINE_SLACK_S = 0.05
SMALL_BATCH_WEIGHT = 0.2  # of the newest time in the running average of small batches' runtime calls


def deadline_reached(now: float, deadline: float | None) -> bool:
    return deadline is not None and now >= deadline - DEADLINE_SLACK_S


class QueueFull(Exception):
    """The model's queue holds max_queue_size requests already."""


class DeadlineExpired(Exception):
    """The request's deadline passed while it waited in the queue; it was not run."""


class BatcherClosed(Exception):
    """The batcher is shutting down and takes no new requests."""


# Built per request: not frozen (a frozen dataclass's __init__ costs several times more).
@dataclass(slots=True)
class BatchResult:
    """One request's rows of its batch's result, its time in the queue, and its share of the batch's
    compute time (its items' part of prepare + execute)."""

    rows: Any
    queue_wait_s: float
    compute_s: float


class BatchWork(Protocol):
    """What a batch runs (serving.model.ServedModel): the three steps of the module docstring."""

    def prepare(self, items: list[Any]) -> Any: ...
    def execute(self, prepared: Any) -> Any: ...
    def finish(self, prepared: Any, output: Any, timing: BatchTiming, exemplar: Exemplar | None) -> Any: ...


class BatchObserver(Protocol):
    """What the batcher reports; serving.metrics implements it with Prometheus, tests with lists."""

    def queue_wait(self, seconds: float) -> None: ...
    def batch_formed(self, items: int) -> None: ...
    def expired(self, requests: int) -> None: ...


class NullObserver:
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
    # A batch of at most this many items runs its runtime call on the event loop itself when no other
    # batch of any model is running, none of this model waits, and its small batches' runtime calls
    # have taken at most `inline_max_s` (a running average): then the loop would only sit idle while
    # the thread ran it, and the two wake-ups of a crossing cost more than a fast model's whole call.
    # A slow model never holds the loop. 0: always a thread.
    inline_max_items: int = 0
    inline_max_s: float = 0.0005


@dataclass(slots=True)
class _Request:
    items: Sequence[Any]
    future: asyncio.Future[BatchResult]
    enqueued_at: float  # perf_counter
    deadline: float | None  # event-loop time, None = no deadline
    size: int
    trace: Any = None  # the request's trace (serving.tracing.RequestTrace), with tracing on
    started: bool = False  # in a batch


@dataclass(slots=True)
class _Batch:
    requests: list[_Request]
    size: int
    formed: float
    prepared_input: Any = None
    prepared: float = 0.0
    computing: bool = True  # until its runtime call returns (set on the inference thread)


class Batcher:
    """Driven by events, not by a task of its own: requests arriving (once per event-loop iteration, so
    that requests arriving together form one batch), a batch finishing, a thread coming free and a
    delay running out each look at the queue once (`_dispatch`) and start whatever batches are due."""

    def __init__(
        self,
        work: BatchWork,
        policy: BatchPolicy,
        pool: InferencePool,
        observer: BatchObserver | None = None,
        name: str = "batcher",
        tracing: BatchTracing | None = None,
    ) -> None:
        self._work = work
        self._tracing = tracing
        self._policy = policy
        self._pool = pool
        self._observer = observer or NullObserver()
        self._name = name
        self._queue: collections.deque[_Request] = collections.deque()
        self._running: list[_Batch] = []  # batches formed and not yet finished
        self._timer: asyncio.TimerHandle | None = None  # a partial batch's flush, while it waits for company
        self._dispatch_due = False  # a `_dispatch` is scheduled for this loop iteration
        self._dispatching = False
        self._closed = False
        self._drained = asyncio.Event()  # closed, nothing queued, nothing running
        self._room: asyncio.Future[None] | None = None  # resolved when a full queue has room again
        self._small_execute_s: float | None = None  # running average of small batches' runtime calls

    @property
    def policy(self) -> BatchPolicy:
        return self._policy

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def submit(
        self, items: Sequence[Any], deadline: float | None = None, trace: Any = None
    ) -> BatchResult:
        """Queue one request; returns its rows of the batch result (same order as `items`)."""
        if self._closed:
            raise BatcherClosed(f"{self._name} is shutting down")
        loop = asyncio.get_running_loop()
        if len(self._queue) >= self._policy.max_queue_size and not self._drop_dead(loop.time()):
            raise QueueFull(f"{self._name} queue holds {self._policy.max_queue_size} requests")
        request = _Request(items, loop.create_future(), time.perf_counter(), deadline, len(items), trace)
        self._queue.append(request)
        if not self._dispatch_due:
            self._dispatch_due = True
            loop.call_soon(self._dispatch)
        try:
            return await request.future
        except asyncio.CancelledError:
            # gRPC cancels the handler when the client goes away or its deadline passes: a request still
            # queued leaves the queue now (it was never run), and one past its deadline counts as expired
            if not request.started:
                with contextlib.suppress(ValueError):  # not there when its deadline had dropped it
                    self._queue.remove(request)
                self._room_made()
                # a request its deadline already dropped (its future holds DeadlineExpired) was counted
                dropped = request.future.done() and not request.future.cancelled()
                if not dropped and deadline_reached(loop.time(), request.deadline):
                    self._observer.expired(1)
            raise

    async def wait_for_room(self) -> None:
        """Until the queue can take one more request (at once when it can now)."""
        while len(self._queue) >= self._policy.max_queue_size and not self._closed:
            if self._room is None:
                self._room = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._room)

    async def close(self) -> None:
        """Stop taking requests, run everything already queued, wait for running batches."""
        self._closed = True
        self._room_made()
        self._dispatch()
        self._check_drained()
        await self._drained.wait()

    def _room_made(self) -> None:
        if self._room is not None and (len(self._queue) < self._policy.max_queue_size or self._closed):
            self._room.set_result(None)
            self._room = None

    def _live(self, request: _Request, now: float) -> bool:
        """Still worth running; an expired one is failed here (a done future: its caller gave up)."""
        if request.future.done():
            return False
        if request.deadline is not None and now >= request.deadline:
            request.future.set_exception(DeadlineExpired("deadline passed while queued"))
            self._observer.expired(1)
            return False
        return True

    def _drop_dead(self, now: float) -> int:
        """Remove the requests whose deadline has passed from a full queue; returns how many it removed."""
        live = [request for request in self._queue if self._live(request, now)]
        dropped = len(self._queue) - len(live)
        if dropped:
            self._queue = collections.deque(live)
        return dropped

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
        """Start every batch that is due now; a partial one on a busy model waits for its flush time,
        and every one waits for a free inference thread."""
        self._dispatch_due = False
        if self._dispatching:  # woken by the pool from inside this very dispatch
            return
        self._dispatching = True
        try:
            self._dispatch_batches()
        finally:
            self._dispatching = False
        self._check_drained()

    def _dispatch_batches(self) -> None:
        policy = self._policy
        loop = asyncio.get_running_loop()
        while self._queue and len(self._running) < policy.max_concurrent_batches:
            now = loop.time()
            batch, size, span = self._next_batch(now)
            if not batch:  # every request left was dead
                for _ in range(span):
                    self._queue.popleft()
                self._room_made()
                continue
            if size < policy.max_batch_size and self._running and not self._closed:
                flush_at = now + (policy.max_queue_delay_s - (time.perf_counter() - batch[0].enqueued_at))
                if now < flush_at:  # another batch runs: wait for company until the delay is over
                    if self._timer is None or abs(self._timer.when() - flush_at) > 1e-4:
                        if self._timer is not None:
                            self._timer.cancel()
                        self._timer = loop.call_at(flush_at, self._flush)
                    return
                if not any(running.computing for running in self._running):
                    return  # their results are on the way: the first one back starts this batch
            if not self._pool.try_take(self._dispatch):
                return  # the pool calls `_dispatch` again when a thread comes free
            for _ in range(span):
                self._queue.popleft()
            if self._timer is not None:  # it was this batch's flush: the next partial batch sets its own
                self._timer.cancel()
                self._timer = None
            self._room_made()
            self._start(batch, size)

    def _flush(self) -> None:
        self._timer = None
        self._dispatch()

    def _start(self, requests: list[_Request], size: int) -> None:
        """Prepare the batch on the loop and hand its runtime call to the thread taken for it."""
        formed = time.perf_counter()
        for request in requests:
            request.started = True
        self._observer.batch_formed(size)
        batch = _Batch(requests, size, formed)
        self._running.append(batch)
        items = list(requests[0].items) if len(requests) == 1 else [i for r in requests for i in r.items]
        try:
            batch.prepared_input = self._work.prepare(items)
        except Exception as error:
            self._pool.give_back()
            self._finished(batch, None, error)
            return
        batch.prepared = time.perf_counter()
        if self._inline(size):
            started = time.perf_counter()
            try:
                output, error = self._work.execute(batch.prepared_input), None
            except Exception as failure:
                output, error = None, failure
            try:
                self._executed(batch, output, error, started, time.perf_counter())
            finally:
                self._pool.give_back()
            return
        self._pool.run(self._execute, batch, lambda *outcome: self._executed(batch, *outcome))

    def _execute(self, batch: _Batch) -> Any:
        """The runtime call, on the inference thread; marks the batch as no longer computing."""
        try:
            return self._work.execute(batch.prepared_input)
        finally:
            batch.computing = False

    def _inline(self, size: int) -> bool:
        """Whether this batch's runtime call runs on the loop (BatchPolicy.inline_max_items)."""
        return (
            size <= self._policy.inline_max_items
            and self._pool.running == 1  # only the thread this batch took
            and not self._queue
            and self._small_execute_s is not None
            and self._small_execute_s <= self._policy.inline_max_s
        )

    def _executed(
        self, batch: _Batch, output: Any, error: BaseException | None, started: float, ended: float
    ) -> None:
        """On the loop, once per batch: its rows, metrics and traces, and every request's answer."""
        rows, timing = None, BatchTiming(batch.formed, batch.prepared, started, ended, batch.size)
        if batch.size <= self._policy.inline_max_items:
            average, took = self._small_execute_s, timing.execute_s
            self._small_execute_s = (
                took if average is None else average + SMALL_BATCH_WEIGHT * (took - average)
            )
        if error is None:
            exemplar = None
            if self._tracing is not None:
                exemplar = self._tracing.batch_ran(
                    [(r.trace, r.enqueued_at) for r in batch.requests], batch.prepared_input, timing
                )
            try:
                rows = self._work.finish(batch.prepared_input, output, timing, exemplar)
            except Exception as failure:
                error = failure
        self._finished(batch, rows, error, timing)

    def _finished(
        self, batch: _Batch, rows: Any, error: BaseException | None, timing: BatchTiming | None = None
    ) -> None:
        """Each request of the batch gets its rows, or the batch's error."""
        self._running.remove(batch)
        compute_per_item = timing.compute_per_item_s if timing is not None else 0.0
        start = 0
        observer = self._observer
        for request in batch.requests:
            waited = batch.formed - request.enqueued_at
            observer.queue_wait(waited)
            if not request.future.done():
                if error is None:
                    request.future.set_result(
                        BatchResult(
                            rows[start : start + request.size], waited, compute_per_item * request.size
                        )
                    )
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
