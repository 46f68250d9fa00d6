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
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

# A client's own deadline timer fires slightly before the server's (the server starts counting the
# timeout when the request has crossed the wire), so the client's cancellation often arrives just before
# the server's deadline. A cancellation this close to the deadline is the deadline passing.
DEADLINE_SLACK_S = 0.01


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


@dataclass
class _Request:
    items: Sequence[Any]
    future: asyncio.Future[Any]
    enqueued_at: float
    deadline: float | None  # event-loop time, None = no deadline
    started: bool = False  # handed to run_batch
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = len(self.items)


class Batcher:
    def __init__(
        self,
        run_batch: Callable[[list[Any]], Any],
        policy: BatchPolicy,
        executor: Executor | None,
        observer: BatchObserver | None = None,
        name: str = "batcher",
    ) -> None:
        self._run_batch = run_batch
        self._policy = policy
        self._executor = executor
        self._observer = observer or NullObserver()
        self._name = name
        self._queue: collections.deque[_Request] = collections.deque()
        self._arrived = asyncio.Event()
        self._slots = asyncio.Semaphore(policy.max_concurrent_batches)
        self._running: set[asyncio.Task[None]] = set()
        self._closed = False
        self._loop_task: asyncio.Task[None] | None = None

    @property
    def policy(self) -> BatchPolicy:
        return self._policy

    @property
    def queued(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._form_batches(), name=self._name)

    async def submit(self, items: Sequence[Any], deadline: float | None = None) -> Any:
        """Queue one request; returns its rows of the batch result (same order as `items`)."""
        if self._closed:
            raise BatcherClosed(f"{self._name} is shutting down")
        if len(self._queue) >= self._policy.max_queue_size:
            raise QueueFull(f"{self._name} queue holds {self._policy.max_queue_size} requests")
        loop = asyncio.get_running_loop()
        request = _Request(items, loop.create_future(), loop.time(), deadline)
        self._queue.append(request)
        self._observer.queue_depth(len(self._queue))
        self._arrived.set()
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
        self._arrived.set()
        if self._loop_task is not None:
            await self._loop_task
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    def _peek_live(self) -> _Request | None:
        """Oldest request still worth running, left in the queue; drops dead ones before it."""
        now = asyncio.get_running_loop().time()
        while self._queue:
            head = self._queue[0]
            if not head.future.done() and (head.deadline is None or now < head.deadline):
                return head
            self._queue.popleft()
            self._observer.queue_depth(len(self._queue))
            if not head.future.done():  # expired; a done future means the caller gave up
                head.future.set_exception(DeadlineExpired("deadline passed while queued"))
                self._observer.expired(1)
        return None

    def _pop_live(self) -> _Request | None:
        head = self._peek_live()
        if head is not None:
            self._queue.popleft()
            self._observer.queue_depth(len(self._queue))
        return head

    async def _wait_for_arrival(self, timeout: float | None) -> bool:
        self._arrived.clear()
        try:
            await asyncio.wait_for(self._arrived.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _next_batch(self) -> list[_Request] | None:
        """Block until a batch is ready; None once closed and drained."""
        first = self._pop_live()
        while first is None:
            if self._closed:
                return None
            await self._wait_for_arrival(None)
            first = self._pop_live()
        batch, size = [first], first.size
        if self._policy.max_queue_delay_s <= 0:
            return batch
        flush_at = first.enqueued_at + self._policy.max_queue_delay_s
        loop = asyncio.get_running_loop()
        while size < self._policy.max_batch_size:
            head = self._peek_live()
            if head is not None:
                if size + head.size > self._policy.max_batch_size:
                    break
                batch.append(head)
                self._queue.popleft()
                self._observer.queue_depth(len(self._queue))
                size += head.size
                continue
            remaining = flush_at - loop.time()
            if self._closed or remaining <= 0 or not self._running:
                break
            if not await self._wait_for_arrival(remaining):
                break
        return batch

    async def _form_batches(self) -> None:
        while True:
            await self._slots.acquire()
            batch = await self._next_batch()
            if batch is None:
                self._slots.release()
                return
            task = asyncio.get_running_loop().create_task(self._execute(batch))
            self._running.add(task)
            task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slots.release()
        self._arrived.set()  # a batch waiting for company re-checks: the model may be idle now

    async def _execute(self, batch: list[_Request]) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        live = []
        for request in batch:
            if request.future.done():
                continue
            if request.deadline is not None and now >= request.deadline:
                request.future.set_exception(DeadlineExpired("deadline passed while queued"))
                self._observer.expired(1)
                continue
            self._observer.queue_wait(now - request.enqueued_at)
            request.started = True
            live.append(request)
        if not live:
            return
        items = [item for request in live for item in request.items]
        self._observer.batch_formed(len(items))
        try:
            rows = await loop.run_in_executor(self._executor, self._run_batch, items)
        except Exception as error:
            for request in live:
                if not request.future.done():
                    request.future.set_exception(error)
            return
        start = 0
        for request in live:
            if not request.future.done():
                request.future.set_result(rows[start : start + request.size])
            start += request.size


def monotonic_deadline(seconds_remaining: float | None) -> float | None:
    """A caller's remaining time -> an absolute deadline on the running loop's clock."""
    if seconds_remaining is None:
        return None
    return asyncio.get_running_loop().time() + seconds_remaining
