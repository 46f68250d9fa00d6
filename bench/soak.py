"""Soak test: a real server under high concurrency for minutes; errors, latency drift and memory growth.

Starts `seqserve serve` on free loopback ports, then keeps `--concurrency` requests outstanding (3 of 4
through seqserve.v1 Classify, 1 of 4 through KServe V2 ModelInfer, round-robin over every model, 1-4
real headlines each) for `--seconds` (default $SOAK_SECONDS or 600). It records every request's
latency by the window it finished in (windows of 60 s, shorter for short runs), and samples the
server's resident memory once a second.

Reported: errors (any status other than OK; must be 0), p50/p99 of the first and the last window
(drift), and RSS growth after warm-up: the highest RSS of the last window against the RSS at the end
of the first window (target < 5 %). Exit status 1 when errors > 0 or the growth target is missed.

    .venv/bin/python -m bench.soak [--models models] [--seconds 600] [--concurrency 64]
                                   [--report reports/soak.md] [-- extra serve flags]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

from bench.proc import rss_bytes
from bench.run import free_port, serve_command, started
from seqserve.loadtest.cli import DEFAULT_TEXTS
from seqserve.loadtest.texts import load_texts
from seqserve.v1 import classifier_pb2, classifier_pb2_grpc

RSS_TARGET = 0.05
MAX_WINDOW_S = 60.0
TIMEOUT_S = 10.0


@dataclass
class Window:
    latencies_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    rss_max: int = 0
    rss_last: int = 0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q) * 1000) if self.latencies_s else float("nan")


@dataclass
class SoakResult:
    windows: list[Window]
    window_s: float
    seconds: float
    concurrency: int
    models: list[str]

    @property
    def errors(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for window in self.windows:
            total.update(window.errors)
        return total

    @property
    def requests(self) -> int:
        return sum(len(w.latencies_s) for w in self.windows) + sum(self.errors.values())

    @property
    def rss_growth(self) -> float:
        """Highest RSS of the last window relative to the RSS at the end of the first (warm-up) one."""
        return self.windows[-1].rss_max / self.windows[0].rss_last - 1


async def soak(
    address: str, pid: int, models: list[str], texts: list[str], seconds: float, concurrency: int
) -> SoakResult:
    window_s = min(MAX_WINDOW_S, seconds / 4)
    windows = [Window() for _ in range(max(2, int(np.ceil(seconds / window_s))))]
    start = time.monotonic()
    end = start + seconds

    def window_now() -> Window:
        return windows[min(len(windows) - 1, int((time.monotonic() - start) / window_s))]

    channels = [
        grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(4)
    ]
    classifiers = [classifier_pb2_grpc.ClassifierStub(c) for c in channels]
    v2s = [service_pb2_grpc.GRPCInferenceServiceStub(c) for c in channels]

    async def one(n: int) -> None:
        model = models[n % len(models)]
        batch = [texts[(n * 7 + i) % len(texts)] for i in range(1 + n % 4)]
        if n % 4 == 3:
            request = service_pb2.ModelInferRequest(model_name=model)
            tensor = request.inputs.add(name="text", datatype="BYTES", shape=[len(batch)])
            tensor.contents.bytes_contents.extend(t.encode() for t in batch)
            call = v2s[n % 4].ModelInfer(request, timeout=TIMEOUT_S)
        else:
            call = classifiers[n % 4].Classify(
                classifier_pb2.ClassifyRequest(model=model, texts=batch), timeout=TIMEOUT_S
            )
        sent = time.perf_counter()
        try:
            await call
        except grpc.aio.AioRpcError as error:
            window_now().errors[error.code().name] += 1
            return
        window_now().latencies_s.append(time.perf_counter() - sent)

    async def worker(index: int) -> None:
        n = index
        while time.monotonic() < end:
            await one(n)
            n += concurrency

    async def sample_rss() -> None:
        while time.monotonic() < end:
            rss = rss_bytes(pid)
            window = window_now()
            window.rss_max, window.rss_last = max(window.rss_max, rss), rss
            await asyncio.sleep(1.0)

    await asyncio.gather(sample_rss(), *(worker(i) for i in range(concurrency)))
    for channel in channels:
        await channel.close()
    return SoakResult(windows, window_s, seconds, concurrency, models)


def markdown(result: SoakResult, command: str, server_log_lines: int) -> str:
    first, last = result.windows[0], result.windows[-1]
    mib = 1024 * 1024
    lines = [
        "# Soak test",
        "",
        f"Command: `{command}`  ",
        f"Date: {datetime.now(UTC).isoformat(timespec='seconds')}; machine: {os.cpu_count()} cores, load "
        f"average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end (shared with other work).",
        "",
        f"{result.seconds:g} s at concurrency {result.concurrency} against {', '.join(result.models)} "
        f"(3/4 seqserve.v1 Classify, 1/4 KServe V2 ModelInfer, 1-4 headlines per request); windows of "
        f"{result.window_s:g} s.",
        "",
        "| figure | value | target |",
        "|---|---|---|",
        f"| requests | {result.requests} | |",
        f"| errors | {sum(result.errors.values())} {dict(result.errors) or ''} | 0 |",
        f"| p50 first / last window | {first.percentile_ms(50):.2f} / {last.percentile_ms(50):.2f} ms | |",
        f"| p99 first / last window | {first.percentile_ms(99):.2f} / {last.percentile_ms(99):.2f} ms | |",
        f"| RSS end of warm-up window / max of last window | {first.rss_last / mib:.1f} / "
        f"{last.rss_max / mib:.1f} MiB | |",
        f"| RSS growth after warm-up | {result.rss_growth * 100:+.2f} % | < {RSS_TARGET * 100:g} % |",
        f"| server log lines at WARNING or above | {server_log_lines} | 0 |",
        "",
        "| window | requests | errors | p50 ms | p99 ms | RSS max MiB |",
        "|---|---|---|---|---|---|",
    ]
    for i, window in enumerate(result.windows):
        lines.append(
            f"| {i + 1} | {len(window.latencies_s)} | {sum(window.errors.values())} | "
            f"{window.percentile_ms(50):.2f} | {window.percentile_ms(99):.2f} | {window.rss_max / mib:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=Path("models"), help="model repository")
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", "600")))
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
        command = serve_command(args.models, free_port(), free_port(), *args.server_args)
        with started(command, log_path) as ready:
            pid = ready["pid"]
            models = sorted(ready["models"])
            print(
                f"soak: {args.seconds:g} s at concurrency {args.concurrency} on {', '.join(models)}",
                flush=True,
            )
            result = asyncio.run(
                soak(ready["grpc_address"], pid, models, texts, args.seconds, args.concurrency)
            )
        server_log_lines = len(log_path.read_text().splitlines())
    command = "python -m bench.soak " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    report = markdown(result, command, server_log_lines)
    args.report.write_text(report)
    print(report)
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "requests": result.requests,
                    "errors": dict(result.errors),
                    "rss_growth": result.rss_growth,
                    "rss_first_bytes": result.windows[0].rss_last,
                    "rss_last_max_bytes": result.windows[-1].rss_max,
                    "p50_ms": [result.windows[0].percentile_ms(50), result.windows[-1].percentile_ms(50)],
                    "p99_ms": [result.windows[0].percentile_ms(99), result.windows[-1].percentile_ms(99)],
                }
            )
        )
    return 0 if not result.errors and result.rss_growth < RSS_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
