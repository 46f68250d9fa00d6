"""The event loop's lag histogram sees the loop being held."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry

from seqserve.metric_names import EVENT_LOOP_LAG
from serving.loop_lag import LAG_INTERVAL_S, LoopLagMonitor


def test_a_held_loop_shows_as_lag_and_an_idle_one_does_not() -> None:
    registry = CollectorRegistry()

    async def main() -> None:
        monitor = LoopLagMonitor(registry)
        monitor.start()
        await asyncio.sleep(LAG_INTERVAL_S * 3.5)  # idle: ticks run on time
        idle = registry.get_sample_value(f"{EVENT_LOOP_LAG}_sum")
        assert registry.get_sample_value(f"{EVENT_LOOP_LAG}_count") >= 2
        time.sleep(0.3)  # the loop is held past the next tick
        await asyncio.sleep(LAG_INTERVAL_S * 1.5)
        monitor.stop()
        held = registry.get_sample_value(f"{EVENT_LOOP_LAG}_sum") - idle
        assert held >= 0.2, held

    asyncio.run(main())
