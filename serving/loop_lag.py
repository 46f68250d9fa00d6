"""The event loop's own lag: how late a timer that asked to run now actually runs.

Every request's Python runs on the one event loop, so anything that holds it (a runtime call run
inline that turned out slow, a large body parsed in Python) delays every other request, health checks
included. A timer every LAG_INTERVAL_S measures it and observes `seqserve_event_loop_lag_seconds`: the
time from when the timer was due to when it ran. Ten callbacks a second cost nothing measurable.
"""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Histogram

from seqserve.metric_names import EVENT_LOOP_LAG

LAG_INTERVAL_S = 0.1
LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class LoopLagMonitor:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = Histogram(
            EVENT_LOOP_LAG, "How late a timer due now ran on the event loop (the loop's own lag)",
            buckets=LAG_BUCKETS, registry=registry,
        )  # fmt: skip
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(loop.time() + LAG_INTERVAL_S, self._tick, loop.time() + LAG_INTERVAL_S)

    def _tick(self, due: float) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.lag.observe(max(0.0, now - due))
        self._timer = loop.call_at(now + LAG_INTERVAL_S, self._tick, now + LAG_INTERVAL_S)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
