"""Interleaved rounds with the Python clients: every cell on every server and protocol, the server
order rotated from round to round; each measurement a warm-up, then a measured phase with the server's
CPU time read from /proc around it (every process of the server)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bench.peers.servers import PROTOCOLS, Served
from seqserve.loadtest.report import Summary, summarize
from seqserve.loadtest.runner import LoadSpec, run_model
from seqserve.loadtest.targets import create_target
from seqserve.loadtest.texts import TextCycle, load_texts

T = TypeVar("T")
# the client of these rows, for the report: tritonclient's for V2, seqserve loadtest's for the others
CLIENTS = {"v2": "tritonclient.grpc.aio", "seqserve": "seqserve loadtest", "tfs": "seqserve loadtest"}


@dataclass(frozen=True)
class Cell:
    model: str
    concurrency: int
    batch: int

    @property
    def label(self) -> str:
        return f"{self.model}, c={self.concurrency}, {self.batch} text{'s' if self.batch > 1 else ''}/request"

    @property
    def shape(self) -> tuple[int, int]:
        return self.concurrency, self.batch


@dataclass(frozen=True)
class Measurement:
    server: str
    protocol: str
    cell: Cell
    round: int
    summary: Summary
    server_cpu_s: float  # every process of the server, during the measured phase

    @property
    def server_cpu_ms_per_request(self) -> float:
        return 1e3 * self.server_cpu_s / self.summary.ok if self.summary.ok else float("nan")


# a figure of one measurement, by the name the targets and the tables use
METRICS: dict[str, Callable[[Measurement], float]] = {
    "requests_per_s": lambda m: m.summary.requests_per_s,
    "texts_per_s": lambda m: m.summary.texts_per_s,
    "p50_ms": lambda m: m.summary.latency_ms["p50"],
    "p99_ms": lambda m: m.summary.latency_ms["p99"],
    "server_cpu_ms": lambda m: m.server_cpu_ms_per_request,
    "client_cpu_percent": lambda m: m.summary.client_cpu_percent,
}


async def measure_one(
    served: Served, protocol: str, cell: Cell, spec: LoadSpec, texts: TextCycle, round_: int
) -> Measurement:
    load = dataclasses.replace(spec, concurrency=cell.concurrency, batch=cell.batch, warmup_s=0.0)
    target = create_target(protocol, served.server.address, spec.channels)
    try:
        if spec.warmup_s > 0:
            await run_model(
                target, cell.model, dataclasses.replace(load, duration_s=spec.warmup_s), texts, None
            )
        cpu_before = served.server.cpu_seconds()
        run = await run_model(target, cell.model, load, texts, None)
        cpu = served.server.cpu_seconds() - cpu_before
    finally:
        await target.close()
    return Measurement(served.name, protocol, cell, round_, summarize(run), cpu)


def rotated(items: Sequence[T], round_: int) -> list[T]:
    """`items` in the order of round `round_`: each round starts one further along."""
    shift = round_ % len(items) if items else 0
    return [*items[shift:], *items[:shift]]


def measured_pairs(servers: Sequence[Served], cell: Cell) -> list[tuple[Served, str]]:
    """Every (server, protocol) of a cell, in the report's order: protocol by protocol."""
    return [(s, p) for p in PROTOCOLS for s in servers if p in s.protocols and s.serves(cell.model)]


def run_round(
    servers: Sequence[Served], cells: Sequence[Cell], spec: LoadSpec, corpus: Sequence[str], round_: int
) -> list[Measurement]:
    """Every cell on every server and protocol once, in the server order of round `round_`."""
    results = []
    for cell in cells:
        texts = TextCycle(corpus, cell.batch)
        for served, protocol in rotated(measured_pairs(servers, cell), round_):
            m = asyncio.run(measure_one(served, protocol, cell, spec, texts, round_))
            s = m.summary
            print(
                f"  round {round_ + 1} {cell.label:<40} {served.name:<34} {protocol:<8} "
                f"{s.requests_per_s:8.0f} req/s  p50 {s.latency_ms['p50']:6.2f} ms  "
                f"p99 {s.latency_ms['p99']:6.2f} ms  server CPU {m.server_cpu_ms_per_request:.3f} ms/req",
                flush=True,
            )
            results.append(m)
    return results


def run_rounds(
    servers: Sequence[Served], cells: Sequence[Cell], spec: LoadSpec, texts_path: Path, rounds: int
) -> list[Measurement]:
    """Every cell on every server and protocol, `rounds` times, server order rotated each round."""
    corpus = load_texts(texts_path)
    return [m for round_ in range(rounds) for m in run_round(servers, cells, spec, corpus, round_)]
