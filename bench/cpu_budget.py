"""What the machine's CPUs allow: the most calls/s a server could reach if it cost no more than the echo.

With the load generator on the same CPUs, every call costs the client's CPU and the transport's CPU
(both measured on the echo service: its server does nothing else), and a model adds its own compute per
text. Even a server with no overhead of its own then cannot exceed

    ceiling = CPUs / (echo CPU per call, client + server + model compute per text at its cheapest batch size)

calls/s. A throughput target above that ceiling is out of reach on this machine whatever the server does;
one below it is the server's to meet. The ceiling is optimistic: it assumes every CPU cycle goes to the
benchmark (other processes get none) and that batching reaches the in-process per-text cost.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass


def cpu_ms_per_call(client_cpu_percent: float, server_cpu_percent: float, calls_per_s: float) -> float:
    """CPU time of client and server together per call (percentages of one CPU); NaN without calls."""
    if not calls_per_s:
        return math.nan
    return (client_cpu_percent + server_cpu_percent) / 100 / calls_per_s * 1e3


@dataclass(frozen=True)
class CpuBudget:
    cpus: int
    echo_calls_per_s: float
    echo_cpu_ms_per_call: float  # client + echo server, per call

    @classmethod
    def from_echo(cls, calls_per_s: float, client_cpu_percent: float, server_cpu_percent: float) -> CpuBudget:
        cost = cpu_ms_per_call(client_cpu_percent, server_cpu_percent, calls_per_s)
        return cls(os.cpu_count() or 1, calls_per_s, cost)

    def ceiling_calls_per_s(self, compute_ms_per_text: float) -> float:
        """One text per call: the most calls/s the CPUs allow at the echo's cost plus this compute."""
        return self.cpus * 1e3 / (self.echo_cpu_ms_per_call + compute_ms_per_text)

    def ceiling_share_of_echo(self, compute_ms_per_text: float) -> float:
        return self.ceiling_calls_per_s(compute_ms_per_text) / self.echo_calls_per_s
