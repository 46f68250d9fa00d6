"""One served measurement cell: `seqserve loadtest` against a started server, its CPU time read from
/proc around the cell (bench.run, bench.claims, bench.variable_length)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.cpu_budget import cpu_ms_per_call
from bench.harness import ServerProcess
from seqserve.loadtest.cli import LoadTestConfig, run_loadtest
from seqserve.loadtest.report import Summary
from seqserve.loadtest.runner import LoadSpec

CONCURRENCIES = (1, 32)


@dataclass(frozen=True)
class Cell:
    target: str  # model name or "echo"
    batching: str  # "on", "off" or "-" (echo)
    concurrency: int
    summary: Summary
    server_cpu_percent: float  # of one CPU, over the cell's warm-up and measurement
    protocol: str = "seqserve"  # the load generator's --protocol: "seqserve" (Classify), "v2" or "rest"
    runtime: str = "onnx"  # the server's --runtime ("-" for the echo service)
    beside: str = ""  # echo cells: the model measured just before ("" = the reference at the start)

    @property
    def label(self) -> str:
        return f"echo, beside {self.beside}" if self.beside else self.target

    @property
    def cpu_ms_per_call(self) -> float:
        """Client + server CPU per successful call."""
        s = self.summary
        return cpu_ms_per_call(s.client_cpu_percent, self.server_cpu_percent, s.requests_per_s)


def measure(
    server: ServerProcess,
    model: str,
    spec: LoadSpec,
    texts: Path,
    batching: str,
    protocol: str = "seqserve",
    runtime: str = "onnx",
    concurrencies: Sequence[int] = CONCURRENCIES,
    beside: str = "",
) -> list[Cell]:
    cells = []
    for concurrency in concurrencies:
        load = dataclasses.replace(spec, concurrency=concurrency)
        address = server.rest_address if protocol == "rest" else server.address
        config = LoadTestConfig(address, server.metrics_url, (model,), protocol, texts, load)
        cpu_before, started_at = server.cpu_seconds(), time.perf_counter()
        (summary,) = asyncio.run(run_loadtest(config))
        server_cpu = 100 * (server.cpu_seconds() - cpu_before) / (time.perf_counter() - started_at)
        cells.append(Cell(model, batching, concurrency, summary, server_cpu, protocol, runtime, beside))
        print(f"  {model:<18} {runtime:<4} {protocol:<8} batching {batching:<3} c={concurrency:<3} "
              f"{summary.requests_per_s:8.1f} req/s  p50 {summary.latency_ms['p50']:.2f} ms  "
              f"server CPU {server_cpu:.0f}%", flush=True)  # fmt: skip
    return cells
