"""A slow model keeps the event loop free: health checks and the loop's own lag while a slow model and a
fast one are under load.

One seqserve process serves the slow model (IMDB lstm2: reviews are cut to 256 tokens, its batches take
milliseconds) and a sarcasm model. h2load sends IMDB test reviews at c=32 (4 connections x 8 streams)
to the slow model and headlines at c=8 to the fast one, both at once; meanwhile a prober sends
`grpc.health.v1.Health/Check` on its own connection every 50 ms and times each answer. The report
gives the health check's p50/p99 under that load and idle, the server's own
`seqserve_event_loop_lag_seconds` (serving/loop_lag.py) over the loaded phase, and the gRPC statuses
of the load from `seqserve_requests_total`.

    .venv/bin/python -m bench.slow_model_lag --models models --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from bench.dataset_texts import dataset_texts
from bench.harness import start_seqserve
from bench.machine import cpu_model, loads_text, now_text, write_report
from bench.native_client import CALLS, run_h2load
from seqserve.histograms import Histogram, per_model
from seqserve.loadtest.texts import load_texts
from seqserve.metric_names import EVENT_LOOP_LAG, REQUESTS

PROBE_EVERY_S = 0.05
REPORT = Path("reports/slow_model_lag.md")
TARGET_P99_MS = 20.0
STREAMS = 4 * 8 + 2 * 4  # the two loads' connections x streams


def probe_health(address: str, seconds: float) -> list[float]:
    """Health-check latencies (s), one call every PROBE_EVERY_S for `seconds`, on a channel of its own."""
    latencies = []
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        stub.Check(health_pb2.HealthCheckRequest(), timeout=10)  # connected before timing
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.perf_counter()
            stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
            latencies.append(time.perf_counter() - started)
            time.sleep(PROBE_EVERY_S)
    return latencies


def quantile_ms(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return 1e3 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Scrape:
    """The two things read from the server's /metrics: the loop-lag histogram and requests by code."""

    def __init__(self, url: str) -> None:
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        found = [sample for family in text_string_to_metric_families(text) for sample in family.samples]
        self.lag: Histogram = per_model(EVENT_LOOP_LAG, found)[""]
        self.codes: dict[str, float] = {}
        for sample in found:
            if sample.name == f"{REQUESTS}_total":
                code = sample.labels["code"]
                self.codes[code] = self.codes.get(code, 0.0) + sample.value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--slow-model", default="imdb-lstm2")
    parser.add_argument("--fast-model", default="sarcasm-conv")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    load_start = os.getloadavg()
    reviews = load_texts(dataset_texts("imdb", args.data_dir))
    review = max(reviews[:200], key=len)  # a long test review: cut to 256 tokens by the tokenizer
    headline = load_texts(dataset_texts("sarcasm", args.data_dir))[0]
    with start_seqserve(args.models, "slow-lag") as server:
        assert server.metrics_url is not None
        idle = probe_health(server.address, 3.0)
        before = Scrape(server.metrics_url)
        loads = [
            threading.Thread(
                target=run_h2load,
                args=(server.address, CALLS["v2"](args.slow_model, [review]), 4, 8, args.seconds, 1.0),
            ),
            threading.Thread(
                target=run_h2load,
                args=(server.address, CALLS["v2"](args.fast_model, [headline]), 2, 4, args.seconds, 1.0),
            ),
        ]
        for load in loads:
            load.start()
        time.sleep(1.0)  # the warm-up
        loaded = probe_health(server.address, args.seconds - 1.0)
        for load in loads:
            load.join()
        after = Scrape(server.metrics_url)
    lag = after.lag.minus(before.lag)
    codes = {code: count - before.codes.get(code, 0.0) for code, count in after.codes.items()}
    codes = {code: count for code, count in codes.items() if count}
    p99 = quantile_ms(loaded, 0.99)
    # h2load resets the streams still open when its duration ends: up to one CANCELLED per stream
    ended = codes.get("CANCELLED", 0) <= STREAMS
    verdict = "PASS" if p99 <= TARGET_P99_MS and set(codes) <= {"OK", "CANCELLED"} and ended else "FAIL"
    report = "\n".join(
        [
            "# A slow model keeps the event loop free",
            "",
            f"- command: `.venv/bin/python -m bench.slow_model_lag --models {args.models} --data-dir "
            f"{args.data_dir} --seconds {args.seconds:g}`",
            f"- date: {now_text()}; machine: {cpu_model()}, {os.cpu_count()} logical CPUs shared by the "
            f"server and the load generators; load average at start {loads_text(load_start)}, at end "
            f"{loads_text(os.getloadavg())}",
            f"- load: h2load (nghttp2-client) V2 ModelInfer, {args.slow_model} with one IMDB test review "
            f"({len(review.split())} words, cut to 256 tokens) at c=32 (4 connections x 8 streams) and "
            f"{args.fast_model} with one headline at c=8 (2 x 4), both for {args.seconds:g} s after 1 s of "
            "warm-up; a prober sends grpc.health.v1 Check on a connection of its own every "
            f"{PROBE_EVERY_S * 1e3:g} ms",
            "",
            "| figure | idle | under load |",
            "|---|---:|---:|",
            f"| health check p50 ms | {quantile_ms(idle, 0.5):.2f} | {quantile_ms(loaded, 0.5):.2f} |",
            f"| health check p99 ms | {quantile_ms(idle, 0.99):.2f} | {p99:.2f} |",
            f"| health checks | {len(idle)} | {len(loaded)} |",
            f"| event-loop lag p99 ms (seqserve_event_loop_lag_seconds) | | {1e3 * lag.quantile(0.99):.2f} |",
            f"| event-loop lag mean ms | | {1e3 * lag.total / max(lag.count, 1):.3f} |",
            "",
            "gRPC statuses of the load (seqserve_requests_total): "
            + ", ".join(f"{code} {count:.0f}" for code, count in sorted(codes.items())),
            "",
            f"Target: health check p99 under load ≤ {TARGET_P99_MS:g} ms, every status OK (but at most one "
            f"CANCELLED per stream, those h2load resets when its duration ends): **{verdict}** "
            f"(mean health check under load {statistics.mean(loaded) * 1e3:.2f} ms).",
            "",
        ]
    )
    write_report(args.report, report)
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
