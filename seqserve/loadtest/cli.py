"""`seqserve loadtest`: load one model, several, or every model in turn, then print what it measured.

seqserve loadtest --model sarcasm-lstm --concurrency 32 --duration 10
seqserve loadtest --rate 500 --duration 10 --batch 4            every model (ListModels), open loop
seqserve loadtest --model a,b --json                             machine-readable output
seqserve loadtest --trace-ratio 0.1 --trace-receiver 127.0.0.1:4317
    a tenth of the calls traced (traceparent sent); the server, started with
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317, exports its spans to the receiver this
    starts there, and the slowest sampled calls are printed with the server's stages
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from seqserve.loadtest.report import Summary, format_table, summarize
from seqserve.loadtest.runner import LoadSpec, ModelRun, Progress, run_model
from seqserve.loadtest.targets import PROTOCOLS, CallFailed, create_target
from seqserve.loadtest.texts import TextCycle, TextSourceError, load_texts
from seqserve.loadtest.trace_receiver import TraceReceiver
from seqserve.loadtest.trace_report import CallBreakdown, fetch_breakdowns, slowest
from seqserve.numbers import non_negative_float, non_negative_int, positive_int
from seqserve.tracing import (
    ClientTracing,
    TracingConfigError,
    exporter_names,
    otlp_grpc_exporter,
    span_exporters,
)

DEFAULT_TEXTS = Path("../shared/data/sarcasm/sarcasm.json")


@dataclass(frozen=True)
class LoadTestConfig:
    address: str
    metrics_url: str | None  # None: no server-side view
    models: tuple[str, ...]  # empty: every model the server lists
    protocol: str
    texts_path: Path
    spec: LoadSpec
    trace_ratio: float = 0.0  # > 0: calls traced, this fraction sampled
    trace_receiver: str = ""  # HOST:PORT of the OTLP receiver to run for the server's spans
    slowest: int = 5  # sampled calls listed per model


def ratio(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seqserve loadtest",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.split("\n\n")[1:]),
    )
    defaults = LoadSpec()
    add = parser.add_argument
    add("--address", default="127.0.0.1:8500", help="server gRPC address [%(default)s]")
    add(
        "--metrics-url",
        default="http://127.0.0.1:8502/metrics",
        help="server /metrics URL for the server-side view; '' to skip [%(default)s]",
    )
    add("--model", default="", help="model name or comma-separated names; empty = every listed model")
    add("--protocol", choices=sorted(PROTOCOLS), default="seqserve", help="wire protocol [%(default)s]")
    add(
        "--texts",
        type=Path,
        default=DEFAULT_TEXTS,
        help="JSON array of records with a 'headline' or 'text' field, a file of lines, or a folder inside "
        "a tar archive (archive.tar.gz/folder: its .txt files) [%(default)s]",
    )
    add(
        "--concurrency",
        type=positive_int,
        default=defaults.concurrency,
        help="closed loop: requests outstanding at all times [%(default)s]",
    )
    add(
        "--rate",
        type=non_negative_float,
        default=defaults.rate,
        help="open loop: requests per second on a fixed schedule; 0 = closed loop [%(default)s]",
    )
    add(
        "--duration",
        type=non_negative_float,
        default=defaults.duration_s,
        help="measured seconds per model [%(default)s]",
    )
    add(
        "--warmup",
        type=non_negative_float,
        default=defaults.warmup_s,
        help="unrecorded seconds per model before measuring [%(default)s]",
    )
    add("--batch", type=positive_int, default=defaults.batch, help="texts per request [%(default)s]")
    add(
        "--channels",
        type=positive_int,
        default=defaults.channels,
        help="gRPC channels (TCP connections) the requests are spread over [%(default)s]",
    )
    add(
        "--timeout",
        type=non_negative_float,
        default=defaults.timeout_s,
        help="deadline of each request in seconds [%(default)s]",
    )
    add(
        "--max-requests",
        type=positive_int,
        default=defaults.max_requests,
        help="most requests per phase, whatever the duration [%(default)s]",
    )
    add(
        "--max-in-flight",
        type=positive_int,
        default=defaults.max_in_flight,
        help="open loop: outstanding requests before sending waits (latency still counts) [%(default)s]",
    )
    add(
        "--trace-ratio",
        type=ratio,
        default=None,
        help="trace the calls (a client span each, its traceparent sent), sampling this fraction; exported "
        "to --trace-receiver, else as the OTEL_* variables say [1 with --trace-receiver, else 0: off]",
    )
    add(
        "--trace-receiver",
        default="",
        help="HOST:PORT: run an OTLP/gRPC trace receiver there, for the spans of the server (start it with "
        "OTEL_EXPORTER_OTLP_ENDPOINT=http://HOST:PORT) and of this client; the slowest sampled calls "
        "are then printed with the server's stages",
    )
    add(
        "--slowest",
        type=non_negative_int,
        default=5,
        help="sampled calls listed per model, slowest first [%(default)s]",
    )
    add("--json", action="store_true", help="print the results as JSON instead of a table")
    add(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="live progress line on stderr [default: when stderr is a terminal]",
    )
    return parser  # fmt: skip


def config_from_args(args: argparse.Namespace) -> LoadTestConfig:
    spec = LoadSpec(
        concurrency=args.concurrency,
        rate=args.rate,
        duration_s=args.duration,
        warmup_s=args.warmup,
        batch=args.batch,
        channels=args.channels,
        timeout_s=args.timeout,
        max_requests=args.max_requests,
        max_in_flight=args.max_in_flight,
    )
    return LoadTestConfig(
        address=args.address,
        metrics_url=args.metrics_url or None,
        models=tuple(name for name in args.model.split(",") if name),
        protocol=args.protocol,
        texts_path=args.texts,
        spec=spec,
        trace_ratio=(1.0 if args.trace_receiver else 0.0) if args.trace_ratio is None else args.trace_ratio,
        trace_receiver=args.trace_receiver,
        slowest=args.slowest,
    )


async def run_loadtest(config: LoadTestConfig, progress: Progress | None = None) -> list[Summary]:
    """Every chosen model in turn under the same load; one summary per model."""
    texts = TextCycle(load_texts(config.texts_path), config.spec.batch)
    target = create_target(config.protocol, config.address, config.spec.channels)
    receiver = tracing = None
    runs: list[ModelRun] = []
    try:
        if config.trace_receiver:
            host, _, port = config.trace_receiver.rpartition(":")
            receiver = TraceReceiver(host.strip("[]") or "127.0.0.1", int(port))
        if config.trace_ratio > 0:
            exporters = (
                [otlp_grpc_exporter(receiver.endpoint)]
                if receiver is not None
                else span_exporters(os.environ, exporter_names(os.environ))
            )
            tracing = ClientTracing("seqserve-loadtest", config.trace_ratio, exporters)
        models = list(config.models) or await target.list_models()
        for model in models:
            runs.append(
                await run_model(target, model, config.spec, texts, config.metrics_url, progress, tracing)
            )
        if tracing is not None:
            tracing.shutdown()  # the client spans still buffered
        return [
            dataclasses.replace(summarize(run), slowest_calls=await _slowest_calls(run, config, receiver))
            for run in runs
        ]
    finally:
        await target.close()
        if receiver is not None:
            receiver.stop()


async def _slowest_calls(
    run: ModelRun, config: LoadTestConfig, receiver: TraceReceiver | None
) -> list[CallBreakdown]:
    """The run's slowest sampled calls, with the server's stages when its spans come to `receiver`."""
    calls = slowest(run.outcome.recorder.traced, config.slowest)
    if receiver is None:
        return [CallBreakdown(call.trace_id, call.latency_s * 1e3) for call in calls]
    return await asyncio.to_thread(fetch_breakdowns, receiver, calls)


def _terminal_progress(line: str) -> None:
    sys.stderr.write("\r\033[K" + line)
    sys.stderr.flush()


def loadtest_main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    config = config_from_args(args)
    show_progress = sys.stderr.isatty() if args.progress is None else args.progress
    try:
        summaries = asyncio.run(run_loadtest(config, _terminal_progress if show_progress else None))
    except (OSError, TextSourceError, TracingConfigError) as error:
        print(f"seqserve loadtest: {error}", file=sys.stderr)
        return 2
    except CallFailed as failure:
        print(f"seqserve loadtest: listing the models failed: {failure}", file=sys.stderr)
        return 1
    finally:
        if show_progress:
            sys.stderr.write("\r\033[K")
    if args.json:
        print(
            json.dumps(
                {"config": _config_json(config), "results": [s.as_json() for s in summaries]}, indent=2
            )
        )
    else:
        print(format_table(summaries))
    return 0


def _config_json(config: LoadTestConfig) -> dict[str, object]:
    spec = config.spec
    return {
        "address": config.address,
        "protocol": config.protocol,
        "texts": str(config.texts_path),
        "trace_ratio": config.trace_ratio,
        "mode": "open" if spec.open_loop else "closed",
        **dataclasses.asdict(spec),
    }
