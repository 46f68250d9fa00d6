"""Scale-out on one machine: N server processes on loopback behind gRPC's client-side round_robin.

One multi-address target (`ipv4:127.0.0.1:p1,127.0.0.1:p2`) with the service config
`{"loadBalancingConfig": [{"round_robin": {}}]}`: every channel of the load generator connects to all N
servers and sends each call to the next one, the way a client balances over the addresses of a headless
Kubernetes Service. The load is the project's load generator (closed loop); each server's own
`seqserve_requests_total` shows how the calls were spread, and /proc its resident memory.

    python -m bench.scale_out --models models --servers 1,2 --concurrency 32 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import sys
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench.harness import ServerProcess, start_seqserve
from bench.proc import status_kib
from seqserve.loadtest.cli import DEFAULT_TEXTS
from seqserve.loadtest.report import Summary, summarize
from seqserve.loadtest.runner import LoadSpec, run_model
from seqserve.loadtest.targets import ClassifierTarget
from seqserve.loadtest.texts import TextCycle, load_texts

ROUND_ROBIN = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
REPORT = Path("reports/scale_out.md")


def round_robin_address(grpc_addresses: list[str]) -> str:
    """One `ipv4:` target naming every server: ipv4:127.0.0.1:p1,127.0.0.1:p2."""
    return "ipv4:" + ",".join(grpc_addresses)


def ok_requests(metrics_url: str, model: str) -> float:
    """The server's count of successful requests for `model`, from its own /metrics."""
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "seqserve_requests_total"
        and sample.labels.get("model") == model
        and sample.labels.get("code") == "OK"
    )


def memory_kib(server: ServerProcess) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB of a server, from /proc."""
    rss, peak = status_kib(server.pid, "VmRSS", "VmHWM")
    return rss, peak


@dataclass(frozen=True)
class ScaleOutRun:
    servers: int
    summary: Summary
    share: list[float]  # each server's fraction of the successful requests
    memory_kib: list[tuple[int, int]]  # each server's (RSS, peak RSS) after the run
    served_models: list[str]  # every model the servers loaded (all count towards RSS)


def run_servers(servers: int, args: argparse.Namespace, texts: TextCycle, spec: LoadSpec) -> ScaleOutRun:
    log_dir = Path(args.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        started = [
            stack.enter_context(
                start_seqserve(
                    args.models, f"scale-out-{servers}", *shlex.split(args.server_args), log_dir=log_dir
                )
            )
            for _ in range(servers)
        ]
        model = args.model or sorted(started[0].ready["models"])[0]
        before = [ok_requests(server.metrics_url, model) for server in started]
        address = round_robin_address([server.address for server in started])

        async def load() -> Summary:
            # aio channels belong to the running loop; each balances its calls over every address
            target = ClassifierTarget(
                address, spec.channels, extra_options=[("grpc.service_config", ROUND_ROBIN)]
            )
            try:
                return summarize(await run_model(target, model, spec, texts, None))
            finally:
                await target.close()

        summary = asyncio.run(load())
        served = [
            ok_requests(server.metrics_url, model) - b for server, b in zip(started, before, strict=True)
        ]
        memory = [memory_kib(server) for server in started]
        served_models = sorted(started[0].ready["models"])
    total = sum(served) or 1.0
    shares = [count / total for count in served]
    return ScaleOutRun(servers, summary, shares, memory, served_models)


def markdown(runs: list[ScaleOutRun], spec: LoadSpec, command: str, server_args: str) -> str:
    base = runs[0].summary.requests_per_s
    lines = [
        "# Scale-out on one machine: N servers behind gRPC client-side round_robin",
        "",
        f"Command: `{command}`",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPU cores shared by the servers and the "
        f"load generator (1-minute load average {os.getloadavg()[0]:.1f} at the end); "
        f"model `{runs[0].summary.model}` (each server loads {', '.join(runs[0].served_models)}); "
        f"load {spec.describe()}, {spec.channels} channels, "
        f"server flags `{server_args or '(defaults)'}`.",
        "",
        "| servers | req/s | texts/s | vs 1 server | p50 ms | p99 ms | errors | client CPU % | "
        "share of requests per server | RSS / peak RSS per server (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        s = run.summary
        share = " / ".join(f"{fraction:.0%}" for fraction in run.share)
        memory = " ; ".join(f"{rss / 1024:.0f} / {peak / 1024:.0f}" for rss, peak in run.memory_kib)
        lines.append(
            f"| {run.servers} | {s.requests_per_s:.0f} | {s.texts_per_s:.0f} | "
            f"{s.requests_per_s / base:.2f}x | {s.latency_ms['p50']:.2f} | {s.latency_ms['p99']:.2f} | "
            f"{sum(s.errors.values())} | {s.client_cpu_percent:.0f} | {share} | {memory} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--models", type=Path, default=Path("models"), help="model repository [%(default)s]")
    add("--model", default="", help="model to load [first listed]")
    add("--servers", default="1,2", help="comma-separated server counts [%(default)s]")
    add("--concurrency", type=int, default=32, help="closed-loop requests outstanding [%(default)s]")
    add("--duration", type=float, default=10.0, help="measured seconds per server count [%(default)s]")
    add("--warmup", type=float, default=2.0, help="unrecorded seconds first [%(default)s]")
    add("--batch", type=int, default=1, help="texts per request [%(default)s]")
    add(
        "--channels",
        type=int,
        default=4,
        help="client channels, each balancing over all servers [%(default)s]",
    )
    add("--server-args", default="", help="extra `seqserve serve` flags, e.g. '--inference-threads 1'")
    add("--texts", type=Path, default=DEFAULT_TEXTS, help="request texts [%(default)s]")
    add("--log-dir", default="/tmp/seqserve-scale-out", help="server logs [%(default)s]")
    add("--report", type=Path, default=REPORT, help="markdown report [%(default)s]")
    args = parser.parse_args(argv)
    spec = LoadSpec(
        concurrency=args.concurrency,
        duration_s=args.duration,
        warmup_s=args.warmup,
        batch=args.batch,
        channels=args.channels,
        max_requests=200_000,
    )
    texts = TextCycle(load_texts(args.texts), spec.batch)
    runs = []
    for servers in (int(count) for count in args.servers.split(",")):
        run = run_servers(servers, args, texts, spec)
        s = run.summary
        shares = [round(fraction, 2) for fraction in run.share]
        print(
            f"{servers} server(s): {s.requests_per_s:.0f} req/s, p50 {s.latency_ms['p50']:.2f} ms, {shares}"
        )
        runs.append(run)
    command = "python -m bench.scale_out " + shlex.join(argv if argv is not None else sys.argv[1:])
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(markdown(runs, spec, command, args.server_args))
    print(f"wrote {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
