"""Closed-loop and open-loop load against one model, measured phase by phase.

Closed loop (`concurrency` N): N workers, each sending its next request when the previous one answers;
the server's speed sets the rate. Open loop (`rate` R): request i is due at start + i/R whatever
happened before, and its latency is measured from that *scheduled* time, so a stall of the server (or of
this client) shows up in the latencies of every request it delayed instead of silently lowering the
request count (coordinated omission).

Each model gets a warm-up phase (not recorded), a scrape of the server's /metrics, the measured phase,
and a second scrape once every measured request has answered, so the server's histogram deltas cover
exactly the measured requests.

With a ClientTracing, every call is a CLIENT span whose `traceparent` goes with the request; the
sampled successful calls of the measured phase are recorded with their trace ids.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from seqserve.loadtest.promstats import Scrape, ServerView, scrape, server_view
from seqserve.loadtest.targets import CallFailed, Target
from seqserve.loadtest.texts import TextCycle
from seqserve.tracing import ClientTracing, trace_ids, traceparent_of

PROGRESS_INTERVAL_S = 1.0
CALL_SPAN = "seqserve.loadtest.call"


@dataclass(frozen=True)
class LoadSpec:
    concurrency: int = 1  # closed loop: requests outstanding at all times
    rate: float = 0.0  # > 0: open loop at this many requests per second
    duration_s: float = 10.0
    warmup_s: float = 2.0
    batch: int = 1  # texts per request
    channels: int = 4
    timeout_s: float = 10.0
    max_requests: int = 1_000_000  # per phase, whatever the duration
    max_in_flight: int = 1024  # open loop: requests outstanding before sending waits

    @property
    def open_loop(self) -> bool:
        return self.rate > 0

    def describe(self) -> str:
        load = f"rate {self.rate:g}/s" if self.open_loop else f"concurrency {self.concurrency}"
        return f"{load}, batch {self.batch}, {self.duration_s:g} s"


@dataclass(frozen=True)
class TracedCall:
    latency_s: float
    trace_id: str  # hex, as the traceparent header and every trace viewer show it
    span_id: str  # the client span's: the parent of the server's span


@dataclass
class Recorder:
    """What one phase saw: one latency per successful request, one status per failed one."""

    latencies_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    texts_ok: int = 0
    in_flight: int = 0
    first_send: float = math.nan
    last_send: float = math.nan
    max_send_lag_s: float = 0.0  # open loop: how late the client sent a request after its due time
    traced: list[TracedCall] = field(default_factory=list)  # sampled successful calls

    @property
    def ok(self) -> int:
        return len(self.latencies_s)

    def note_send(self, now: float, scheduled: float) -> None:
        if self.sent == 0:
            self.first_send = now
        self.last_send = now
        self.sent += 1
        self.max_send_lag_s = max(self.max_send_lag_s, now - scheduled)


@dataclass(frozen=True)
class PhaseOutcome:
    recorder: Recorder
    wall_s: float  # first send to last answer
    cpu_s: float  # this process's CPU time (user + system) during the phase


@dataclass(frozen=True)
class ModelRun:
    model: str
    spec: LoadSpec
    outcome: PhaseOutcome
    server: ServerView | None
    server_note: str  # why `server` is missing, or ""


Progress = Callable[[str], None]


class _Phase:
    def __init__(
        self,
        target: Target,
        model: str,
        spec: LoadSpec,
        texts: TextCycle,
        duration_s: float,
        tracing: ClientTracing | None = None,
    ):
        self.target = target
        self.model = model
        self.spec = spec
        self.texts = texts
        self.duration_s = duration_s
        self.recorder = Recorder()
        self.tracing = tracing

    async def send(self, scheduled: float) -> None:
        """One request; latency from `scheduled` (open loop) or from the send itself (closed loop)."""
        recorder = self.recorder
        batch = self.texts.take()
        span = None
        if self.tracing is not None:
            span = self.tracing.start_call(
                CALL_SPAN, {"seqserve.model.name": self.model, "seqserve.texts": len(batch)}
            )
        recorder.note_send(time.perf_counter(), scheduled)
        recorder.in_flight += 1
        try:
            if span is None:
                await self.target.classify(recorder.sent, self.model, batch, self.spec.timeout_s)
            else:
                headers = traceparent_of(span)
                await self.target.classify(recorder.sent, self.model, batch, self.spec.timeout_s, headers)
        except CallFailed as failure:
            recorder.errors[failure.code] += 1
            if span is not None:
                span.set_attribute("seqserve.status", failure.code)
        else:
            latency = time.perf_counter() - scheduled
            recorder.latencies_s.append(latency)
            recorder.texts_ok += len(batch)
            ids = None if span is None else trace_ids(span)
            if ids is not None:
                recorder.traced.append(TracedCall(latency, *ids))
        finally:
            recorder.in_flight -= 1
            if span is not None:
                span.end()

    async def closed_loop(self, deadline: float) -> None:
        async def worker() -> None:
            while self.recorder.sent < self.spec.max_requests and time.perf_counter() < deadline:
                await self.send(time.perf_counter())

        await asyncio.gather(*(worker() for _ in range(self.spec.concurrency)))

    async def open_loop(self, start: float) -> None:
        interval = 1.0 / self.spec.rate
        total = min(self.spec.max_requests, math.ceil(self.duration_s * self.spec.rate))
        slots = asyncio.Semaphore(self.spec.max_in_flight)
        tasks: set[asyncio.Task[None]] = set()

        async def send_in_slot(scheduled: float) -> None:
            try:
                await self.send(scheduled)
            finally:
                slots.release()

        for index in range(total):
            scheduled = start + index * interval
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            task = asyncio.create_task(send_in_slot(scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)

    async def run(self, progress: Progress | None, phase_name: str) -> PhaseOutcome:
        cpu_start = time.process_time()
        start = time.perf_counter()
        ticker = asyncio.create_task(self._report(progress, phase_name, start)) if progress else None
        try:
            if self.spec.open_loop:
                await self.open_loop(start)
            else:
                await self.closed_loop(start + self.duration_s)
        finally:
            if ticker is not None:
                ticker.cancel()
        return PhaseOutcome(self.recorder, time.perf_counter() - start, time.process_time() - cpu_start)

    async def _report(self, progress: Progress, phase_name: str, start: float) -> None:
        last_ok, last_time = 0, start
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_S)
            now, recorder = time.perf_counter(), self.recorder
            rate = (recorder.ok - last_ok) / (now - last_time)
            last_ok, last_time = recorder.ok, now
            progress(
                f"{self.model} {phase_name} {now - start:5.1f}/{self.duration_s:g} s  sent {recorder.sent}  "
                f"ok {recorder.ok}  errors {sum(recorder.errors.values())}  {rate:7.1f} req/s  "
                f"in flight {recorder.in_flight}"
            )


async def _scrape(url: str) -> tuple[Scrape | None, str]:
    try:
        return await asyncio.to_thread(scrape, url), ""
    except (OSError, ValueError) as error:  # URLError is an OSError
        return None, f"cannot scrape {url}: {error}"


async def run_model(
    target: Target,
    model: str,
    spec: LoadSpec,
    texts: TextCycle,
    metrics_url: str | None,
    progress: Progress | None = None,
    tracing: ClientTracing | None = None,
) -> ModelRun:
    if spec.warmup_s > 0:
        await _Phase(target, model, spec, texts, spec.warmup_s, tracing).run(progress, "warm-up")
    before, note = await _scrape(metrics_url) if metrics_url else (None, "no --metrics-url")
    outcome = await _Phase(target, model, spec, texts, spec.duration_s, tracing).run(progress, "measure")
    view = None
    if before is not None and metrics_url:
        after, note = await _scrape(metrics_url)
        if after is not None:
            view = server_view(before, after, model)
            note = "" if view is not None else f"the server recorded no request for {model}"
    return ModelRun(model, spec, outcome, view, note)
