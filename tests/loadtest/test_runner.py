"""The open loop charges a stall to every request it delayed (no coordinated omission)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from seqserve.loadtest.runner import LoadSpec, run_model
from seqserve.loadtest.targets import CallFailed
from seqserve.loadtest.texts import TextCycle

STALL_S = 0.2


class StallingTarget:
    """Answers at once, except that the first call takes STALL_S; every fifth call fails."""

    def __init__(self) -> None:
        self.calls = 0

    async def list_models(self) -> list[str]:
        return ["m"]

    async def classify(self, channel: int, model: str, texts: Sequence[str], timeout: float) -> None:
        self.calls += 1
        if self.calls == 1:
            await asyncio.sleep(STALL_S)
        if self.calls % 5 == 0:
            raise CallFailed("UNAVAILABLE", "every fifth call")

    async def close(self) -> None:
        pass


def test_latency_counts_from_the_scheduled_send_time():
    # 100/s with one request allowed in flight: the ~20 requests due during the stall are sent late.
    spec = LoadSpec(rate=100, duration_s=1.0, warmup_s=0, max_in_flight=1)
    target = StallingTarget()
    run = asyncio.run(run_model(target, "m", spec, TextCycle(["a", "b"], 1), metrics_url=None))
    recorder = run.outcome.recorder
    assert recorder.sent == 100 == target.calls
    assert recorder.ok == 80 and recorder.errors == {"UNAVAILABLE": 20}
    delayed = [latency for latency in recorder.latencies_s if latency > STALL_S / 2]
    # measured from the actual send, only the stalled request itself would be slow
    assert len(delayed) >= 5
    assert recorder.max_send_lag_s >= STALL_S * 0.9
    assert run.server is None and run.server_note == "no --metrics-url"
