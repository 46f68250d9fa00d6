"""Soak test: a real server under high concurrency for half an hour; errors, latency drift, memory growth.

Starts `seqserve serve` on free loopback ports (bench.harness) and keeps `--concurrency` requests
outstanding with the load tester's closed loop (seqserve.loadtest.runner): 3 of 4 through seqserve.v1
Classify, 1 of 4 through KServe V2 ModelInfer, spread over every model, 1-4 real headlines each. The run
is a sequence of windows (60 s; shorter for short runs), each one measured phase per mix of model,
protocol and texts per request, all at once. At the start and after every window the resident memory
of every process of the server (the supervisor and its `--workers`) is read from /proc.

Reported over the last 20 minutes (the whole run after its first window, when shorter): errors (any
status other than OK; must be 0), p50/p99 of its first and last window (drift), and RSS growth: the
highest sample against the one at its start (target < 1 %). Exit status 1 on any error or a missed
growth target.

    .venv/bin/python -m bench.soak [--models models] [--seconds 1800] [--concurrency 64]
                                   [--report reports/soak.md] [-- extra serve flags]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shlex
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.harness import ServerProcess, free_port, serve_command
from bench.machine import loads_text, now_text
from seqserve.loadtest.cli import DEFAULT_TEXTS
from seqserve.loadtest.runner import LoadSpec, ModelRun, run_model
from seqserve.loadtest.targets import Target, create_target
from seqserve.loadtest.texts import TextCycle, load_texts

SECONDS = 1800.0
RSS_TARGET = 0.01
JUDGED_S = 1200.0  # the span whose growth and drift are judged: the last 20 minutes
MAX_WINDOW_S = 60.0
CHANNELS = 4
MAX_TEXTS = 4
V2_EVERY = 4  # every 4th request slot goes through KServe V2


@dataclass(frozen=True)
class Mix:
    """One share of the load: a model, a protocol and texts per request, with its concurrency."""

    model: str
    protocol: str
    batch: int
    concurrency: int


def mixes(models: Sequence[str], concurrency: int) -> list[Mix]:
    """Request slot n goes to model n mod M, through V2 every V2_EVERY-th slot, with 1 + n mod 4 texts."""
    slots: Counter[tuple[str, str, int]] = Counter()
    for n in range(concurrency):
        protocol = "v2" if n % V2_EVERY == V2_EVERY - 1 else "seqserve"
        slots[(models[n % len(models)], protocol, 1 + n % MAX_TEXTS)] += 1
    return [Mix(model, protocol, batch, count) for (model, protocol, batch), count in sorted(slots.items())]


@dataclass(frozen=True)
class Window:
    ok: int
    errors: Counter[str]
    p50_ms: float
    p99_ms: float
    rss_bytes: int  # the whole server, at the end of the window

    @classmethod
    def of(cls, runs: Sequence[ModelRun], rss_bytes: int) -> Window:
        errors: Counter[str] = Counter()
        for run in runs:
            errors.update(run.outcome.recorder.errors)
        latencies = np.array([x for run in runs for x in run.outcome.recorder.latencies_s]) * 1e3
        p50, p99 = np.percentile(latencies, [50, 99]) if latencies.size else (math.nan, math.nan)
        return cls(int(latencies.size), errors, float(p50), float(p99), rss_bytes)

    @property
    def requests(self) -> int:
        return self.ok + sum(self.errors.values())


@dataclass
class SoakResult:
    windows: list[Window]
    rss_start_bytes: int  # before the first window
    window_s: float
    seconds: float
    concurrency: int
    models: list[str]

    @property
    def judged(self) -> list[Window]:
        """The windows of the last JUDGED_S seconds, never the first (warm-up) one."""
        count = max(1, min(len(self.windows) - 1, round(JUDGED_S / self.window_s)))
        return self.windows[-count:]

    @property
    def judged_start_rss(self) -> int:
        """RSS when the judged span began: at the end of the window before it."""
        return self.windows[-len(self.judged) - 1].rss_bytes

    @property
    def errors(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for window in self.windows:
            total.update(window.errors)
        return total

    @property
    def requests(self) -> int:
        return sum(w.requests for w in self.windows)

    @property
    def rss_growth(self) -> float:
        """Highest RSS sample of the judged span relative to the one at its start."""
        return max(w.rss_bytes for w in self.judged) / self.judged_start_rss - 1


def window_seconds(seconds: float) -> float:
    return min(MAX_WINDOW_S, seconds / 4)


async def soak(
    server: ServerProcess, models: list[str], texts: list[str], seconds: float, concurrency: int
) -> SoakResult:
    window_s = window_seconds(seconds)
    shares = mixes(models, concurrency)
    targets: dict[str, Target] = {
        protocol: create_target(protocol, server.address, CHANNELS)
        for protocol in {m.protocol for m in shares}
    }
    cycles = {m: TextCycle(texts, m.batch) for m in shares}
    rss_start = sum(server.rss_bytes())
    windows = []
    try:
        for _ in range(max(2, math.ceil(seconds / window_s))):
            runs = await asyncio.gather(
                *(
                    run_model(
                        targets[m.protocol],
                        m.model,
                        LoadSpec(concurrency=m.concurrency, duration_s=window_s, warmup_s=0, batch=m.batch),
                        cycles[m],
                        None,
                    )
                    for m in shares
                )
            )
            windows.append(Window.of(runs, sum(server.rss_bytes())))
            last = windows[-1]
            print(
                f"  window {len(windows)}: {last.requests} requests, {sum(last.errors.values())} errors, "
                f"p99 {last.p99_ms:.2f} ms, RSS {last.rss_bytes / 2**20:.1f} MiB",
                flush=True,
            )
    finally:
        for target in targets.values():
            await target.close()
    return SoakResult(windows, rss_start, window_s, seconds, concurrency, models)


def markdown(result: SoakResult, command: str, server_log_lines: int) -> str:
    judged = result.judged
    first, last = judged[0], judged[-1]
    mib = 1024 * 1024
    lines = [
        "# Soak test",
        "",
        f"Command: `{command}`  ",
        f"Date: {now_text()}; machine: {os.cpu_count()} cores, load average "
        f"{loads_text(os.getloadavg())} at the end (shared with other work).",
        "",
        f"{result.seconds:g} s at concurrency {result.concurrency} against {', '.join(result.models)} "
        "(the load tester's closed loop: 3/4 seqserve.v1 Classify, 1/4 KServe V2 ModelInfer, 1-4 headlines "
        f"per request); windows of {result.window_s:g} s; judged: the last {len(judged)} windows "
        f"({len(judged) * result.window_s:g} s). RSS: every process of the server, from /proc, after each "
        "window.",
        "",
        "| figure | value | target |",
        "|---|---|---|",
        f"| requests | {result.requests} | |",
        f"| errors | {sum(result.errors.values())} {dict(result.errors) or ''} | 0 |",
        f"| p50 first / last judged window | {first.p50_ms:.2f} / {last.p50_ms:.2f} ms | |",
        f"| p99 first / last judged window | {first.p99_ms:.2f} / {last.p99_ms:.2f} ms | |",
        f"| RSS at the start of the judged span / its max | {result.judged_start_rss / mib:.1f} / "
        f"{max(w.rss_bytes for w in judged) / mib:.1f} MiB | |",
        f"| RSS growth over the judged span | {result.rss_growth * 100:+.2f} % | < {RSS_TARGET * 100:g} % |",
        f"| server log lines at WARNING or above | {server_log_lines} | 0 |",
        "",
        f"RSS before the first window: {result.rss_start_bytes / mib:.1f} MiB.",
        "",
        "| window | requests | errors | p50 ms | p99 ms | RSS after MiB |",
        "|---|---|---|---|---|---|",
    ]
    for i, window in enumerate(result.windows):
        lines.append(
            f"| {i + 1} | {window.requests} | {sum(window.errors.values())} | "
            f"{window.p50_ms:.2f} | {window.p99_ms:.2f} | {window.rss_bytes / mib:.1f} |"
        )
    return "\n".join(lines) + "\n"


def figures(result: SoakResult) -> dict[str, object]:
    first, last = result.judged[0], result.judged[-1]
    return {
        "requests": result.requests,
        "errors": dict(result.errors),
        "rss_growth": result.rss_growth,
        "rss_judged_start_bytes": result.judged_start_rss,
        "rss_bytes": [w.rss_bytes for w in result.windows],
        "p50_ms": [first.p50_ms, last.p50_ms],
        "p99_ms": [first.p99_ms, last.p99_ms],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=Path("models"), help="model repository")
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", SECONDS)))
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--texts", type=Path, default=DEFAULT_TEXTS, help="sarcasm.json or a file of lines")
    parser.add_argument("--report", type=Path, default=Path("reports/soak.md"))
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    parser.add_argument("--server-log", type=Path, default=None, help="keep the server's log (WARNING+) here")
    parser.add_argument("server_args", nargs="*", help="extra `seqserve serve` flags (after --)")
    args = parser.parse_args(argv)
    texts = load_texts(args.texts, limit=5000)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        log_path = args.server_log or Path(scratch, "server.log")
        command = serve_command(args.models, "--log-level", "WARNING", *args.server_args, port=free_port())
        with ServerProcess(command, log_path) as server:
            models = sorted(server.ready["models"])
            print(
                f"soak: {args.seconds:g} s at concurrency {args.concurrency} on {', '.join(models)}",
                flush=True,
            )
            result = asyncio.run(soak(server, models, texts, args.seconds, args.concurrency))
        server_log_lines = len(log_path.read_text().splitlines())
    command = "python -m bench.soak " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    report = markdown(result, command, server_log_lines)
    args.report.write_text(report)
    print(report)
    if args.json is not None:
        args.json.write_text(json.dumps(figures(result)))
    return 0 if not result.errors and result.rss_growth < RSS_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
