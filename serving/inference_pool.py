"""The inference threads: they run runtime calls and nothing else, one batch at a time each.

Every Python step of a batch (tokenizing, padding, splitting results, metrics) runs on the event loop.
Only the runtime call, which releases the GIL while the graph runs, crosses to one of these threads, so
the loop and the threads do not hand the GIL back and forth. A crossing costs more CPU than a small
model's whole batch (measured with h2load, reports/peers.md), so there is one crossing each way per
batch: a job goes in through a C queue (one wake-up of a waiting thread), and the whole batch's result
comes back in one `call_soon_threadsafe` (one wake-up of the loop).

Threads are taken, not queued for: a batcher forms a batch only when `try_take` gives it a free thread
(`waiting` remembers who asked), so requests keep waiting in their model's queue, where their deadlines
are checked and they can still join a batch, rather than in a queue of batches no metric sees. When a
thread comes free the batchers that asked are woken in the order they asked. Model loads and
explanations have threads of their own: a load never delays a batch.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

# (the call, its argument, what to call on the loop with (result, error, started, ended))
Done = Callable[[Any, BaseException | None, float, float], None]
_Job = tuple[Callable[[Any], Any], Any, Done]


class InferencePool:
    def __init__(self, threads: int, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._free = threads
        self._waiting: collections.deque[Callable[[], None]] = collections.deque()
        self._threads = [
            threading.Thread(target=self._work, name=f"inference_{index}", daemon=True)
            for index in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def running(self) -> int:
        """Threads taken now (running a batch's call, or about to)."""
        return len(self._threads) - self._free

    def try_take(self, wake: Callable[[], None]) -> bool:
        """Take a free thread for one `run`; with none free, `wake` is called (on the loop) when one
        comes free, and False returned."""
        if self._free > 0:
            self._free -= 1
            return True
        if wake not in self._waiting:
            self._waiting.append(wake)
        return False

    def give_back(self) -> None:
        """Return a thread taken but not used, waking who waits for one."""
        self._free += 1
        while self._free > 0 and self._waiting:
            self._waiting.popleft()()

    def run(self, call: Callable[[Any], Any], argument: Any, done: Done) -> None:
        """`call(argument)` on the thread taken for it; `done(result, error, started, ended)` follows on
        the loop, with the perf_counter readings around the call."""
        self._jobs.put((call, argument, done))

    def _work(self) -> None:
        jobs, call_soon = self._jobs, self._loop.call_soon_threadsafe
        while (job := jobs.get()) is not None:
            call, argument, done = job
            started = time.perf_counter()
            try:
                result, error = call(argument), None
            except BaseException as failure:  # handed to the batch's requests, never lost
                result, error = None, failure
            ended = time.perf_counter()
            try:
                call_soon(self._finished, done, result, error, started, ended)
            except RuntimeError:  # the loop is closed: nobody is left to answer
                return

    def _finished(
        self, done: Done, result: Any, error: BaseException | None, started: float, ended: float
    ) -> None:
        try:
            done(result, error, started, ended)
        finally:  # whatever `done` does, the thread is free again
            self.give_back()

    def close(self, timeout: float | None = None) -> None:
        """Let the threads finish the jobs they were given, then stop them (within `timeout`)."""
        for _ in self._threads:
            self._jobs.put(None)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
