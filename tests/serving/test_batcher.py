"""The dynamic batcher on its own: no gRPC, no models; the batch's work is a recording object."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.batch_timing import BatchTiming
from serving.batcher import (
    DEADLINE_SLACK_S,
    Batcher,
    BatcherClosed,
    BatchPolicy,
    DeadlineExpired,
    QueueFull,
)
from serving.inference_pool import InferencePool


class RecordingObserver:
    def __init__(self) -> None:
        self.waits: list[float] = []
        self.batches: list[int] = []
        self.expired_count = 0

    def queue_wait(self, seconds: float) -> None:
        self.waits.append(seconds)

    def batch_formed(self, items: int) -> None:
        self.batches.append(items)

    def expired(self, requests: int) -> None:
        self.expired_count += requests


class Recorder:
    """A BatchWork that records each batch and answers item -> (item, batch number); its runtime step
    can be held shut.

    `gate` holds every batch in `execute` (on its inference thread); `hold_gate` holds only batches
    starting with a "hold" item, so a test can keep the model busy while other batches run. `threads`
    records where each step of each batch ran.
    """

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.hold_gate = threading.Event()
        self.entered = threading.Event()
        self.threads: list[tuple[str, int]] = []
        self.executed_on: dict[Any, int] = {}  # a batch's first item -> the thread its execute ran on

    def prepare(self, items: list[Any]) -> list[Any]:
        self.threads.append(("prepare", threading.get_ident()))
        if items and items[0] == "unpreparable":
            raise ValueError("cannot prepare")
        return items

    def execute(self, items: list[Any]) -> list[Any]:
        self.threads.append(("execute", threading.get_ident()))
        self.executed_on[items[0]] = threading.get_ident()
        self.entered.set()
        assert self.gate.wait(10), "test left the gate shut"
        if str(items[0]).startswith("hold"):
            assert self.hold_gate.wait(10), "test left the hold gate shut"
        if "boom" in items:
            raise ValueError("bad batch")
        return items

    def finish(self, items: list[Any], output: list[Any], timing: BatchTiming, exemplar: Any) -> list[Any]:
        self.threads.append(("finish", threading.get_ident()))
        self.batches.append(list(items))
        return [(item, len(self.batches)) for item in output]

    async def running(self) -> None:
        """Wait until a batch is inside execute (held at the gate)."""
        assert await asyncio.to_thread(self.entered.wait, 5), "no batch started"


def run(
    test: Callable[[Batcher, Recorder, RecordingObserver], Coroutine[Any, Any, None]],
    threads: int = 2,
    pool_type: type[InferencePool] = InferencePool,
    **policy: Any,
) -> Recorder:
    async def main() -> None:
        defaults = {"max_batch_size": 4, "max_queue_delay_s": 0.05, "max_queue_size": 100}
        pool = pool_type(threads)
        batcher = Batcher(recorder, BatchPolicy(**{**defaults, **policy}), pool, observer)
        try:
            await asyncio.wait_for(test(batcher, recorder, observer), 20)
        finally:
            recorder.gate.set()
            recorder.hold_gate.set()
            await batcher.close()
            pool.close()

    recorder, observer = Recorder(), RecordingObserver()
    asyncio.run(main())
    return recorder


def items_of(results: list[Any]) -> list[Any]:
    return [item for result in results for item, _ in result.rows]


async def keep_busy(batcher: Batcher, recorder: Recorder) -> asyncio.Future[Any]:
    """Start a batch that stays running until `recorder.hold_gate` opens."""
    held = asyncio.ensure_future(batcher.submit(["hold"]))
    await recorder.running()
    return held


def test_idle_model_runs_a_lone_request_at_once():
    """Nothing of this model is running: waiting for company would only add latency."""

    async def body(batcher, recorder, observer):
        assert (await asyncio.wait_for(batcher.submit(["alone"]), 5)).rows == [("alone", 1)]

    run(body, max_queue_delay_s=60.0, max_concurrent_batches=2)


def test_full_batch_runs_at_once_and_a_partial_one_waits_while_the_model_is_busy():
    async def body(batcher, recorder, observer):
        held = await keep_busy(batcher, recorder)
        requests = [asyncio.ensure_future(batcher.submit([f"t{i}"])) for i in range(5)]
        # the delay is 60 s: only a full batch runs while "hold" keeps the model busy
        first_four = await asyncio.wait_for(asyncio.gather(*requests[:4]), 5)
        assert [result.rows[0] for result in first_four] == [("t0", 1), ("t1", 1), ("t2", 1), ("t3", 1)]
        await asyncio.sleep(0.05)
        assert not requests[4].done()
        recorder.hold_gate.set()  # the model goes idle: the waiting partial batch runs now
        assert (await asyncio.wait_for(requests[4], 5)).rows == [("t4", 3)]
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


class DeliveryHeldPool(InferencePool):
    """Its threads finish each runtime call at once but hold the result until `deliver` is set: a batch
    that has computed and waits for the loop to take its result, as under load."""

    def __init__(self, threads: int) -> None:
        super().__init__(threads)
        self.deliver = threading.Event()

    def run(self, call: Callable[[Any], Any], argument: Any, done: Any) -> None:
        def computed_then_held(argument: Any) -> Any:
            try:
                return call(argument)
            finally:
                assert self.deliver.wait(10), "test never delivered the result"

        super().run(computed_then_held, argument, done)


def test_a_partial_batch_past_its_delay_waits_for_a_computed_batch_instead_of_running_beside_it():
    """Beside a batch that is still computing, the next one starts after the delay (a slow model uses
    both threads); beside one that has computed and only waits for the loop, it waits for that result
    and then runs with everything that queued meanwhile, rather than splitting it into two batches."""

    async def body(batcher, recorder, observer):
        pool = batcher._pool
        first = asyncio.ensure_future(batcher.submit(["a"]))
        await asyncio.sleep(0)  # "a" starts at once on the idle model, computes, its result is held
        later = [asyncio.ensure_future(batcher.submit([item])) for item in ("b", "c")]
        await asyncio.sleep(0.25)  # five times the 0.05 s delay: "b" and "c" would have started by now
        assert recorder.threads.count(("prepare", threading.get_ident())) == 1, "a batch ran beside"
        assert not any(request.done() for request in later)
        pool.deliver.set()
        await asyncio.wait_for(asyncio.gather(first, *later), 5)
        assert recorder.batches == [["a"], ["b", "c"]]

    run(body, pool_type=DeliveryHeldPool, max_queue_delay_s=0.05, max_concurrent_batches=2)


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
        for request, result in zip(requests, results, strict=True):
            assert [item for item, _ in result.rows] == request
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
        assert (await asyncio.wait_for(behind, 5)).rows[0][0] == "behind"
        await first
        recorder.hold_gate.set()
        await held
        assert recorder.batches == [["first", "behind"], ["hold"]]

    run(body, max_queue_delay_s=0.1, max_concurrent_batches=2)


def test_failing_batch_fails_each_of_its_requests_and_the_batcher_goes_on():
    async def body(batcher, recorder, observer):
        results = await asyncio.gather(
            batcher.submit(["ok", "boom"]), batcher.submit(["x"]), return_exceptions=True
        )
        assert all(isinstance(r, ValueError) for r in results)
        with pytest.raises(ValueError, match="cannot prepare"):
            await batcher.submit(["unpreparable"])
        assert items_of([await batcher.submit(["later"])]) == ["later"]

    run(body, max_queue_delay_s=0.05)


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
        assert (await running).rows[0][0] == "running"
        assert (await queued).rows[0][0] == "queued"

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
        for request, result in zip(requests, results, strict=True):
            assert [item for item, _ in result.rows] == request
            assert len({batch for _, batch in result.rows}) == 1  # never split
        for batch in recorder.batches:
            starts = [item for item in batch if item.endswith("i0")]
            assert len(batch) <= max_batch_size or len(starts) == 1  # oversize only when alone
        assert sorted(map(len, recorder.batches)) == sorted(observer.batches)

    run(body, max_batch_size=max_batch_size, max_queue_delay_s=delay_s)


def test_only_the_runtime_step_leaves_the_event_loop_and_each_batch_crosses_once():
    """prepare and finish run on the loop thread, execute on an inference thread: one crossing each way
    per batch, whatever its size."""

    async def body(batcher, recorder, observer):
        await asyncio.gather(*(batcher.submit([f"t{i}"]) for i in range(7)))

    loop_thread = threading.get_ident()  # asyncio.run runs the loop on this thread
    recorder = run(body, max_batch_size=4, max_queue_delay_s=0.05, max_concurrent_batches=1)
    steps = [step for step, _ in recorder.threads]
    assert steps == ["prepare", "execute", "finish"] * len(recorder.batches)
    assert len(recorder.batches) == 2  # 4 + 3, formed from the 7 requests that arrived together
    assert {thread for step, thread in recorder.threads if step != "execute"} == {loop_thread}
    assert loop_thread not in {thread for step, thread in recorder.threads if step == "execute"}


def test_a_batch_forms_only_when_an_inference_thread_is_free_and_gathers_meanwhile():
    """Two models share one thread: while one holds it, the other's requests wait in its own queue
    (where deadlines are still checked) and leave it as one batch; their queue wait covers the wait
    for the thread."""

    async def main() -> None:
        pool = InferencePool(1)
        busy, other = Recorder(), Recorder()
        busy_observer, other_observer = RecordingObserver(), RecordingObserver()
        policy = BatchPolicy(8, 0.0005, 100, 1)
        first = Batcher(busy, policy, pool, busy_observer)
        second = Batcher(other, policy, pool, other_observer)
        held = asyncio.ensure_future(first.submit(["hold"]))
        await busy.running()
        waiting = [asyncio.ensure_future(second.submit([f"w{i}"])) for i in range(3)]
        await asyncio.sleep(0.05)  # much longer than the 0.5 ms delay: a free thread would have run them
        assert second.queued == 3 and not other.batches
        busy.hold_gate.set()
        results = await asyncio.gather(*waiting)
        await held
        assert other.batches == [["w0", "w1", "w2"]]
        assert min(result.queue_wait_s for result in results) >= 0.05
        assert min(other_observer.waits) >= 0.05
        await first.close()
        await second.close()
        pool.close()

    asyncio.run(main())


def test_each_request_gets_its_share_of_the_batch_compute_time():
    async def body(batcher, recorder, observer):
        one, three = await asyncio.gather(batcher.submit(["a"]), batcher.submit(["b", "c", "d"]))
        assert recorder.batches == [["a", "b", "c", "d"]]
        assert one.compute_s > 0 and three.compute_s == pytest.approx(3 * one.compute_s)

    run(body, max_batch_size=4, max_concurrent_batches=1)


def test_a_cancelled_request_leaves_the_queue_at_once():
    """Regression: a cancelled request kept its queue slot until the next batch formed, so a full queue
    refused new requests (RESOURCE_EXHAUSTED) that it had room for."""

    async def body(batcher, recorder, observer):
        held = await keep_busy(batcher, recorder)
        queued = [asyncio.ensure_future(batcher.submit([f"q{i}"])) for i in range(2)]
        await asyncio.sleep(0)
        assert batcher.queued == 2
        queued[0].cancel()
        await asyncio.gather(queued[0], return_exceptions=True)
        assert batcher.queued == 1
        room = asyncio.ensure_future(batcher.submit(["room"]))  # would be QueueFull with the slot taken
        await asyncio.sleep(0)
        recorder.hold_gate.set()
        await asyncio.gather(held, queued[1], room)
        assert [item for batch in recorder.batches for item in batch] == ["hold", "q1", "room"]

    run(body, max_queue_size=2, max_concurrent_batches=1, max_queue_delay_s=0.0)


def test_requests_past_their_deadline_make_room_in_a_full_queue():
    """Regression: expired requests held their slots until a batch formed: a full queue of them refused
    a live request."""

    async def body(batcher, recorder, observer):
        loop = asyncio.get_running_loop()
        held = await keep_busy(batcher, recorder)
        doomed = [
            asyncio.ensure_future(batcher.submit([f"d{i}"], deadline=loop.time() + 0.01)) for i in range(2)
        ]
        await asyncio.sleep(0.02)
        assert batcher.queued == 2
        live = asyncio.ensure_future(batcher.submit(["live"]))
        await asyncio.sleep(0)
        assert batcher.queued == 1 and observer.expired_count == 2
        recorder.hold_gate.set()
        await asyncio.gather(held, live)
        assert all(isinstance(d.exception(), DeadlineExpired) for d in doomed)

    run(body, max_queue_size=2, max_concurrent_batches=1, max_queue_delay_s=0.0)


def test_waiting_for_room_wakes_when_a_request_leaves_without_polling(monkeypatch):
    """Regression: a stream waiting for queue room checked every millisecond, on the loop, exactly when
    the server was overloaded. It now sleeps until a request leaves the full queue."""

    async def body(batcher, recorder, observer):
        sleeps: list[float] = []
        real_sleep = asyncio.sleep

        async def counted_sleep(delay: float, *args: Any) -> Any:
            sleeps.append(delay)
            return await real_sleep(delay, *args)

        held = await keep_busy(batcher, recorder)
        queued = [asyncio.ensure_future(batcher.submit([f"q{i}"])) for i in range(2)]
        await real_sleep(0)
        monkeypatch.setattr(asyncio, "sleep", counted_sleep)
        waiter = asyncio.ensure_future(batcher.wait_for_room())
        await real_sleep(0.02)
        assert not waiter.done() and sleeps == []
        recorder.hold_gate.set()  # the held batch ends, the queued ones form the next: room
        await asyncio.wait_for(waiter, 5)
        assert sleeps == []
        await asyncio.gather(held, *queued)

    run(body, max_queue_size=2, max_concurrent_batches=1, max_queue_delay_s=0.0)


def test_a_slow_runtime_step_never_holds_the_event_loop():
    """A batch's runtime call runs on its thread: the loop answers timers while it runs."""

    class Slow(Recorder):
        def execute(self, items: list[Any]) -> list[Any]:
            self.entered.set()
            assert self.gate.wait(10)
            return items

    async def main() -> None:
        pool = InferencePool(1)
        slow = Slow()
        slow.gate.clear()
        batcher = Batcher(slow, BatchPolicy(4, 0.0, 10), pool)
        running = asyncio.ensure_future(batcher.submit(["slow"]))
        await slow.running()
        for _ in range(20):  # were the runtime step on the loop, the loop could not turn here
            await asyncio.sleep(0)
        assert not running.done()
        slow.gate.set()
        await running
        await batcher.close()
        pool.close()

    asyncio.run(main())


def test_a_small_batch_runs_inline_only_when_nothing_else_runs_or_waits_and_the_model_is_fast():
    """inline_max_items: the runtime call of one small request on an idle server skips the crossing
    once such calls are known to be fast; a larger batch, or one while another batch runs, crosses."""
    loop_thread = threading.get_ident()

    async def body(batcher, recorder, observer):
        await batcher.submit(["first"])  # not yet timed: on a thread
        await batcher.submit(["alone"])
        held = asyncio.ensure_future(batcher.submit(["hold", "two texts"]))  # larger: a thread
        await recorder.running()
        await batcher.submit(["beside"])  # small, but another batch runs: a thread
        recorder.hold_gate.set()
        await held
        await batcher.submit(["after"])

    recorder = run(
        body, max_batch_size=8, max_queue_delay_s=0.0, max_concurrent_batches=2, inline_max_items=1
    )
    on_loop = {first: thread == loop_thread for first, thread in recorder.executed_on.items()}
    assert on_loop == {"first": False, "alone": True, "hold": False, "beside": False, "after": True}


def test_a_slow_model_never_runs_on_the_event_loop():
    """Regression guard: a model whose small batches take longer than inline_max_s crosses every time."""

    class Slow(Recorder):
        def execute(self, items: list[Any]) -> list[Any]:
            self.threads.append(("execute", threading.get_ident()))
            threading.Event().wait(0.002)
            return items

    async def main() -> None:
        pool = InferencePool(1)
        slow = Slow()
        batcher = Batcher(slow, BatchPolicy(4, 0.0, 10, inline_max_items=1, inline_max_s=0.001), pool)
        for _ in range(5):
            await batcher.submit(["lone"])
        await batcher.close()
        pool.close()
        executed = [thread for step, thread in slow.threads if step == "execute"]
        assert len(executed) == 5 and threading.get_ident() not in executed

    asyncio.run(main())


def test_an_inline_batch_that_fails_fails_its_request_and_the_batcher_goes_on():
    async def body(batcher, recorder, observer):
        await batcher.submit(["timed"])  # on a thread: now known to be fast
        with pytest.raises(ValueError, match="bad batch"):
            await batcher.submit(["boom"])
        assert items_of([await batcher.submit(["fine"])]) == ["fine"]

    loop_thread = threading.get_ident()
    recorder = run(body, max_queue_delay_s=0.0, inline_max_items=1)
    assert [thread == loop_thread for step, thread in recorder.threads if step == "execute"] == [
        False,
        True,
        True,
    ]


def test_a_request_its_deadline_dropped_and_then_cancelled_counts_as_expired_once():
    """Regression: a request dropped at its deadline (its future failed with DeadlineExpired) whose
    caller was then cancelled before resuming was counted expired twice."""

    async def body(batcher, recorder, observer):
        loop = asyncio.get_running_loop()
        held = await keep_busy(batcher, recorder)
        doomed = asyncio.ensure_future(batcher.submit(["doomed"], deadline=loop.time() + 0.01))
        await asyncio.sleep(0.02)
        live = asyncio.ensure_future(batcher.submit(["live"]))  # the full queue drops the doomed one
        await asyncio.sleep(0)
        doomed.cancel()  # gRPC cancels the handler before it resumed
        await asyncio.gather(doomed, return_exceptions=True)
        recorder.hold_gate.set()
        await asyncio.gather(held, live)
        assert observer.expired_count == 1

    run(body, max_queue_size=1, max_concurrent_batches=1, max_queue_delay_s=0.0)
