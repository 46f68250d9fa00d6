"""The dynamic batcher on its own: no gRPC, no models; run_batch is a recording function."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.batcher import (
    DEADLINE_SLACK_S,
    Batcher,
    BatcherClosed,
    BatchPolicy,
    DeadlineExpired,
    QueueFull,
)


class RecordingObserver:
    def __init__(self) -> None:
        self.depths: list[int] = []
        self.waits: list[float] = []
        self.batches: list[int] = []
        self.expired_count = 0

    def queue_depth(self, requests: int) -> None:
        self.depths.append(requests)

    def queue_wait(self, seconds: float) -> None:
        self.waits.append(seconds)

    def batch_formed(self, items: int) -> None:
        self.batches.append(items)

    def expired(self, requests: int) -> None:
        self.expired_count += requests


class Recorder:
    """run_batch that records each batch and answers item -> (item, batch number); can be held shut.

    `gate` holds every batch; `hold_gate` holds only batches starting with a "hold" item, so a test
    can keep the model busy while other batches run.
    """

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.hold_gate = threading.Event()
        self.entered = threading.Event()

    def __call__(self, items: list[Any]) -> list[tuple[Any, int]]:
        self.entered.set()
        assert self.gate.wait(10), "test left the gate shut"
        if str(items[0]).startswith("hold"):
            assert self.hold_gate.wait(10), "test left the hold gate shut"
        self.batches.append(list(items))
        return [(item, len(self.batches)) for item in items]

    async def running(self) -> None:
        """Wait until a batch is inside run_batch (held at the gate)."""
        assert await asyncio.to_thread(self.entered.wait, 5), "no batch started"


def run(test: Callable[[Batcher, Recorder, RecordingObserver], Coroutine[Any, Any, None]], **policy: Any):
    async def main() -> None:
        recorder, observer = Recorder(), RecordingObserver()
        defaults = {"max_batch_size": 4, "max_queue_delay_s": 0.05, "max_queue_size": 100}
        with ThreadPoolExecutor(2) as executor:
            batcher = Batcher(recorder, BatchPolicy(**{**defaults, **policy}), executor, observer)
            try:
                await asyncio.wait_for(test(batcher, recorder, observer), 20)
            finally:
                recorder.gate.set()
                recorder.hold_gate.set()
                await batcher.close()

    asyncio.run(main())


async def keep_busy(batcher: Batcher, recorder: Recorder) -> asyncio.Future[Any]:
    """Start a batch that stays running until `recorder.hold_gate` opens."""
    held = asyncio.ensure_future(batcher.submit(["hold"]))
    await recorder.running()
    return held


def test_idle_model_runs_a_lone_request_at_once():
    """Nothing of this model is running: waiting for company would only add latency."""

    async def body(batcher, recorder, observer):
        assert await asyncio.wait_for(batcher.submit(["alone"]), 5) == [("alone", 1)]

    run(body, max_queue_delay_s=60.0, max_concurrent_batches=2)


def test_full_batch_runs_at_once_and_a_partial_one_waits_while_the_model_is_busy():
    async def body(batcher, recorder, observer):
        held = await keep_busy(batcher, recorder)
        requests = [asyncio.ensure_future(batcher.submit([f"t{i}"])) for i in range(5)]
        # the delay is 60 s: only a full batch runs while "hold" keeps the model busy
        first_four = await asyncio.wait_for(asyncio.gather(*requests[:4]), 5)
        assert [rows[0] for rows in first_four] == [("t0", 1), ("t1", 1), ("t2", 1), ("t3", 1)]
        await asyncio.sleep(0.05)
        assert not requests[4].done()
        recorder.hold_gate.set()  # the model goes idle: the waiting partial batch runs now
        assert await asyncio.wait_for(requests[4], 5) == [("t4", 3)]
        await held
        assert recorder.batches == [["t0", "t1", "t2", "t3"], ["hold"], ["t4"]]

    run(body, max_queue_delay_s=60.0, max_concurrent_batches=2)


def test_partial_batch_waits_for_company_until_the_delay():
    async def body(batcher, recorder, observer):
        held = await keep_busy(batcher, recorder)
        first = asyncio.ensure_future(batcher.submit(["a"]))
        await asyncio.sleep(0.02)  # well inside the 0.3 s delay: joins the same batch
        second = asyncio.ensure_future(batcher.submit(["b"]))
        await asyncio.gather(first, second)
        recorder.hold_gate.set()
        await held
        await batcher.submit(["c"])  # after the flush, on an idle model: a batch of its own
        assert recorder.batches == [["a", "b"], ["hold"], ["c"]]
        assert max(observer.waits[1:3]) >= 0.25

    run(body, max_queue_delay_s=0.3, max_concurrent_batches=2)


def test_zero_delay_runs_every_request_alone():
    async def body(batcher, recorder, observer):
        recorder.gate.clear()
        blocked = asyncio.ensure_future(batcher.submit(["x"]))
        await recorder.running()
        rest = [asyncio.ensure_future(batcher.submit([f"y{i}"])) for i in range(3)]
        await asyncio.sleep(0.01)
        recorder.gate.set()
        await asyncio.gather(blocked, *rest)
        assert recorder.batches == [["x"], ["y0"], ["y1"], ["y2"]]

    run(body, max_queue_delay_s=0.0, max_concurrent_batches=1)


def test_each_request_gets_exactly_its_rows_and_requests_never_split():
    async def body(batcher, recorder, observer):
        requests = [["a1", "a2"], ["b1", "b2", "b3"], ["c1"], ["d1", "d2", "d3", "d4", "d5", "d6"]]
        results = await asyncio.gather(*(batcher.submit(r) for r in requests))
        for request, rows in zip(requests, results, strict=True):
            assert [item for item, _ in rows] == request
        # a (2) + b (3) > 4: b starts a new batch; c fits with b; d (6 > max) runs alone
        assert recorder.batches == [
            ["a1", "a2"],
            ["b1", "b2", "b3", "c1"],
            ["d1", "d2", "d3", "d4", "d5", "d6"],
        ]

    run(body, max_queue_delay_s=0.05, max_concurrent_batches=1)


def test_full_queue_rejects_at_once_and_queued_requests_still_complete():
    async def body(batcher, recorder, observer):
        recorder.gate.clear()
        running = asyncio.ensure_future(batcher.submit(["running"]))
        await recorder.running()
        queued = [asyncio.ensure_future(batcher.submit([f"q{i}"])) for i in range(2)]
        await asyncio.sleep(0)
        assert batcher.queued == 2
        with pytest.raises(QueueFull):
            await batcher.submit(["rejected"])
        recorder.gate.set()
        await asyncio.gather(running, *queued)
        assert all("rejected" not in batch for batch in recorder.batches)
        assert sorted(item for batch in recorder.batches for item in batch) == ["q0", "q1", "running"]

    run(body, max_queue_size=2, max_concurrent_batches=1, max_queue_delay_s=0.0)


def test_request_whose_deadline_passes_in_the_queue_is_dropped_unrun():
    async def body(batcher, recorder, observer):
        loop = asyncio.get_running_loop()
        recorder.gate.clear()
        running = asyncio.ensure_future(batcher.submit(["running"]))
        await recorder.running()
        doomed = asyncio.ensure_future(batcher.submit(["doomed"], deadline=loop.time() + 0.02))
        fine = asyncio.ensure_future(batcher.submit(["fine"], deadline=loop.time() + 30))
        await asyncio.sleep(0.06)
        recorder.gate.set()
        await running
        with pytest.raises(DeadlineExpired):
            await doomed
        await fine
        assert observer.expired_count == 1
        assert all("doomed" not in batch for batch in recorder.batches)

    run(body, max_concurrent_batches=1, max_queue_delay_s=0.0)


def test_caller_cancelled_after_its_deadline_counts_as_expired_and_is_not_run():
    """gRPC cancels the handler when the deadline passes; the batcher must still count and skip it."""

    async def body(batcher, recorder, observer):
        loop = asyncio.get_running_loop()
        recorder.gate.clear()
        running = asyncio.ensure_future(batcher.submit(["running"]))
        await recorder.running()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(batcher.submit(["doomed"], deadline=loop.time() + 0.02), 0.03)
        cancelled_without_deadline = asyncio.ensure_future(batcher.submit(["cancelled"]))
        await asyncio.sleep(0)
        cancelled_without_deadline.cancel()
        recorder.gate.set()
        await running
        await batcher.submit(["after"])
        assert observer.expired_count == 1
        ran = [item for batch in recorder.batches for item in batch]
        assert ran == ["running", "after"]

    run(body, max_concurrent_batches=1, max_queue_delay_s=0.0)


def test_cancelled_just_before_its_deadline_counts_as_expired():
    """Regression: the client's deadline timer fires a little before the server's, so its cancellation
    can arrive just before the server-side deadline; it was counted as a plain cancellation."""

    async def body(batcher, recorder, observer):
        loop = asyncio.get_running_loop()
        recorder.gate.clear()
        running = asyncio.ensure_future(batcher.submit(["running"]))
        await recorder.running()
        deadline = loop.time() + 0.05
        queued = asyncio.ensure_future(batcher.submit(["client gave up"], deadline=deadline))
        await asyncio.sleep(0.05 - DEADLINE_SLACK_S / 2)  # the client's cancel, slightly early
        queued.cancel()
        await asyncio.gather(queued, return_exceptions=True)
        recorder.gate.set()
        await running
        assert observer.expired_count == 1
        assert [item for batch in recorder.batches for item in batch] == ["running"]

    run(body, max_concurrent_batches=1, max_queue_delay_s=0.0)


def test_cancelled_request_ahead_of_live_ones_does_not_swallow_them():
    """Regression: dropping a dead queue head while a batch formed also dropped the live request
    behind it, whose caller then waited forever."""

    async def body(batcher, recorder, observer):
        held = await keep_busy(batcher, recorder)
        first = asyncio.ensure_future(batcher.submit(["first"]))
        await asyncio.sleep(0.01)  # "first" is forming a batch, waiting for company
        cancelled = asyncio.ensure_future(batcher.submit(["cancelled"]))
        behind = asyncio.ensure_future(batcher.submit(["behind"]))
        await asyncio.sleep(0)  # both queued; the batcher has not looked yet
        cancelled.cancel()
        assert (await asyncio.wait_for(behind, 5))[0][0] == "behind"
        await first
        recorder.hold_gate.set()
        await held
        assert recorder.batches == [["first", "behind"], ["hold"]]

    run(body, max_queue_delay_s=0.1, max_concurrent_batches=2)


def test_failing_batch_fails_each_of_its_requests_and_the_batcher_goes_on():
    async def main() -> None:
        calls = []

        def flaky(items: list[str]) -> list[str]:
            calls.append(items)
            if "boom" in items:
                raise ValueError("bad batch")
            return items

        batcher = Batcher(flaky, BatchPolicy(4, 0.05, 10), None)
        results = await asyncio.gather(
            batcher.submit(["ok", "boom"]), batcher.submit(["x"]), return_exceptions=True
        )
        assert all(isinstance(r, ValueError) for r in results)
        assert await batcher.submit(["later"]) == ["later"]
        await batcher.close()

    asyncio.run(main())


def test_close_runs_what_is_queued_then_refuses_new_requests():
    async def body(batcher, recorder, observer):
        recorder.gate.clear()
        running = asyncio.ensure_future(batcher.submit(["running"]))
        await recorder.running()
        queued = asyncio.ensure_future(batcher.submit(["queued"]))
        await asyncio.sleep(0)
        closing = asyncio.ensure_future(batcher.close())
        await asyncio.sleep(0)
        with pytest.raises(BatcherClosed):
            await batcher.submit(["too late"])
        recorder.gate.set()
        await closing
        assert (await running)[0][0] == "running"
        assert (await queued)[0][0] == "queued"

    run(body, max_concurrent_batches=1, max_queue_delay_s=0.0)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=12),
    max_batch_size=st.integers(1, 8),
    delay_s=st.sampled_from([0.0, 0.002]),
)
def test_any_mix_of_requests_gets_its_own_rows_within_batch_limits(sizes, max_batch_size, delay_s):
    requests = [[f"r{r}i{i}" for i in range(size)] for r, size in enumerate(sizes)]

    async def body(batcher, recorder, observer):
        results = await asyncio.gather(*(batcher.submit(r) for r in requests))
        for request, rows in zip(requests, results, strict=True):
            assert [item for item, _ in rows] == request
            assert len({batch for _, batch in rows}) == 1  # never split
        for batch in recorder.batches:
            starts = [item for item in batch if item.endswith("i0")]
            assert len(batch) <= max_batch_size or len(starts) == 1  # oversize only when alone
        assert sorted(map(len, recorder.batches)) == sorted(observer.batches)

    run(body, max_batch_size=max_batch_size, max_queue_delay_s=delay_s)


def test_small_batches_run_inline_only_on_an_idle_model_with_nothing_queued():
    """inline_max_items: one small request on an idle model skips the thread hand-off once such batches
    are known to be fast; anything larger, or anything while the model is busy, runs in the executor."""
    loop_thread = threading.get_ident()
    threads: dict[str, int] = {}

    def where(items: list[str]) -> list[str]:
        threads[items[0]] = threading.get_ident()
        if items[0] == "slow":
            time.sleep(0.2)
        return items

    async def main() -> None:  # asyncio.run runs the loop on this thread
        with ThreadPoolExecutor(2) as executor:
            batcher = Batcher(where, BatchPolicy(8, 0.0, 10, 2, inline_max_items=1), executor)
            assert await batcher.submit(["first"]) == ["first"]  # not yet timed: in the executor
            assert await batcher.submit(["alone"]) == ["alone"]
            assert await batcher.submit(["two", "texts"]) == ["two", "texts"]
            slow = asyncio.ensure_future(batcher.submit(["slow", "two texts"]))
            await asyncio.sleep(0.05)  # "slow" (two texts) is running in the executor
            assert await batcher.submit(["beside"]) == ["beside"]
            await slow
            await batcher.close()

    asyncio.run(main())
    assert threads["first"] != loop_thread
    assert threads["alone"] == loop_thread
    assert threads["two"] != loop_thread
    assert threads["slow"] != loop_thread and threads["beside"] != loop_thread


def test_a_slow_model_never_holds_the_event_loop():
    """Regression: a lone request of a slow model ran on the loop and stalled every other request."""
    ran_on: list[int] = []

    def slow(items: list[str]) -> list[str]:
        ran_on.append(threading.get_ident())
        time.sleep(0.01)
        return items

    async def main() -> None:
        batcher = Batcher(slow, BatchPolicy(4, 0.0, 10, inline_max_items=1, inline_max_s=0.001), None)
        for _ in range(5):
            await batcher.submit(["lone"])
        await batcher.close()

    asyncio.run(main())
    assert threading.get_ident() not in ran_on


def test_an_inline_batch_that_fails_fails_its_request_and_the_batcher_goes_on():
    def flaky(items: list[str]) -> list[str]:
        if items == ["boom"]:
            raise ValueError("bad batch")
        return items

    async def main() -> None:
        batcher = Batcher(flaky, BatchPolicy(4, 0.0, 10, inline_max_items=1), None)
        assert await batcher.submit(["timed"]) == ["timed"]  # in the executor: now known to be fast
        with pytest.raises(ValueError, match="bad batch"):
            await batcher.submit(["boom"])
        assert await batcher.submit(["fine"]) == ["fine"]
        await batcher.close()

    asyncio.run(main())
