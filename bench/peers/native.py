"""Interleaved rounds with the native client: h2load sending pre-encoded gRPC frames
(bench.native_client) to the floor and to seqserve, the server order rotated from round to round.

Every h2load run here is a number of calls, each one answered: a timed run (`-D`) stops with calls in
flight, which the server would count as CANCELLED. A measurement is a short run that finds the rate,
a warm-up of as many calls as that rate makes `warmup_s`, then a measured phase of as many calls as
the warm-up's rate makes `seconds`, with the server's CPU time read from /proc around it. seqserve's
/metrics is read before and after the measured phase:
its request counter by gRPC status code (any non-OK status, or a call it did not count OK, fails the
cell), and its tokenize, inference and batch-size histograms, for the per-request CPU account. The floor
has no /metrics: it answers OK by construction (bench/echo_server.py never fails a call).
"""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.native_client import CALLS, H2loadResult, grpc_statuses, run_h2load, status_problems
from bench.peers.rounds import Cell, rotated
from bench.peers.servers import PROTOCOLS, Served
from seqserve.loadtest.promstats import parse_histograms
from seqserve.metric_names import BATCH_SIZE, INFERENCE_DURATION, TOKENIZE_DURATION

# concurrency -> h2load's connections x streams per connection
LAYOUTS = {1: (1, 1), 32: (4, 8), 8: (2, 4)}
# the one cell a server of several processes is measured in: two workers against one
WORKERS_SHAPE = (32, 1)
RATE_PROBE_CALLS = 8  # per stream: the run that finds the rate the warm-up's length is set from
SCRAPE_TIMEOUT_S = 10.0


def layout(concurrency: int) -> tuple[int, int]:
    """h2load's connections and streams per connection for `concurrency` calls in flight."""
    return LAYOUTS.get(concurrency, (1, concurrency))


@dataclass(frozen=True)
class ServerCounts:
    """What a seqserve server's own /metrics recorded for one model over a measured phase."""

    statuses: dict[str, int]  # gRPC status code -> requests
    model_seconds: float  # tokenize + runtime, the sums of their histograms
    batches: float  # executed batches (one tokenize observation each)
    batched_texts: float  # texts in them (the batch-size histogram's sum)

    @property
    def mean_batch(self) -> float:
        return self.batched_texts / self.batches if self.batches else math.nan


def server_counts(before: str, after: str, model: str) -> ServerCounts:
    """The deltas between two /metrics pages of a seqserve server, for `model`."""
    earlier, later = parse_histograms(before), parse_histograms(after)

    def delta(name: str) -> tuple[float, float]:
        latest = later.get(name, {}).get(model)
        if latest is None:
            return 0.0, 0.0
        change = latest.minus(earlier.get(name, {}).get(model))
        return change.count, change.total

    batches, tokenize_s = delta(TOKENIZE_DURATION)
    _, inference_s = delta(INFERENCE_DURATION)
    _, texts = delta(BATCH_SIZE)
    return ServerCounts(grpc_statuses(before, after, model), tokenize_s + inference_s, batches, texts)


@dataclass(frozen=True)
class NativeMeasurement:
    server: str
    protocol: str
    cell: Cell
    round: int
    result: H2loadResult
    server_cpu_s: float  # every process of the server, during the measured phase
    counts: ServerCounts | None  # None: the floor, which has no /metrics

    @property
    def requests_per_s(self) -> float:
        return self.result.requests_per_s

    @property
    def texts_per_s(self) -> float:
        return self.result.requests_per_s * self.cell.batch

    @property
    def mean_latency_ms(self) -> float:
        return 1e3 * self.result.mean_latency_s

    @property
    def server_cpu_ms(self) -> float:
        """Per answered call."""
        return 1e3 * self.server_cpu_s / self.result.succeeded if self.result.succeeded else math.nan

    def problems(self) -> list[str]:
        """Why the cell fails: calls h2load saw fail, non-OK gRPC statuses, calls the server did not
        count OK. [] for a clean cell."""
        failed = [f"{self.result.failed} calls failed at the HTTP/2 level"] if self.result.failed else []
        counted = status_problems(self.counts.statuses, self.result.succeeded) if self.counts else []
        return failed + counted


NATIVE_METRICS: dict[str, Callable[[NativeMeasurement], float]] = {
    "requests_per_s": lambda m: m.requests_per_s,
    "texts_per_s": lambda m: m.texts_per_s,
    "mean_latency_ms": lambda m: m.mean_latency_ms,
    "server_cpu_ms": lambda m: m.server_cpu_ms,
}


def metrics_page(url: str) -> str:
    with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as response:
        return response.read().decode("utf-8")


def native_pairs(servers: Sequence[Served], cell: Cell) -> list[tuple[Served, str]]:
    """Every (server, protocol) the native client measures in a cell, protocol by protocol: a server
    of several processes only in WORKERS_SHAPE over V2 ModelInfer (against one worker)."""
    return [
        (s, p)
        for p in PROTOCOLS
        for s in servers
        if s.native
        and p in s.protocols
        and s.serves(cell.model)
        and (s.processes == 1 or (cell.shape == WORKERS_SHAPE and p == "v2"))
    ]


def measure_native(
    served: Served,
    protocol: str,
    cell: Cell,
    texts: Sequence[str],
    seconds: float,
    warmup_s: float,
    round_: int,
) -> NativeMeasurement:
    call = CALLS[protocol](cell.model, texts[: cell.batch])
    connections, streams = layout(cell.concurrency)
    address, url = served.server.address, served.server.metrics_url
    in_flight = connections * streams
    probe = run_h2load(address, call, connections, streams, requests=RATE_PROBE_CALLS * in_flight)
    warm_calls = max(in_flight, round(probe.requests_per_s * warmup_s))
    warm = run_h2load(address, call, connections, streams, requests=warm_calls)
    before = metrics_page(url) if url else ""
    calls = max(in_flight, round(warm.requests_per_s * seconds))
    cpu_before = served.server.cpu_seconds()
    result = run_h2load(address, call, connections, streams, requests=calls)
    cpu = served.server.cpu_seconds() - cpu_before
    counts = server_counts(before, metrics_page(url), cell.model) if url else None
    return NativeMeasurement(served.name, protocol, cell, round_, result, cpu, counts)


def run_native_round(
    servers: Sequence[Served],
    cells: Sequence[Cell],
    texts: Sequence[str],
    seconds: float,
    warmup_s: float,
    round_: int,
) -> list[NativeMeasurement]:
    """Every native cell on every server and protocol once, in the server order of round `round_`."""
    results = []
    for cell in cells:
        for served, protocol in rotated(native_pairs(servers, cell), round_):
            m = measure_native(served, protocol, cell, texts, seconds, warmup_s, round_)
            problems = "; ".join(m.problems()) or "all OK"
            print(
                f"  round {round_ + 1} h2load {cell.label:<40} {served.name:<20} {protocol:<8} "
                f"{m.requests_per_s:8.0f} req/s  mean {m.mean_latency_ms:6.3f} ms  "
                f"server CPU {m.server_cpu_ms:.3f} ms/req  {problems}",
                flush=True,
            )
            results.append(m)
    return results
