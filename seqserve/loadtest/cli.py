"""`seqserve loadtest`: load one model, several, or every model in turn, then print what it measured.

seqserve loadtest --model sarcasm-lstm --concurrency 32 --duration 10
seqserve loadtest --rate 500 --duration 10 --batch 4            every model (ListModels), open loop
seqserve loadtest --model a,b --json                             machine-readable output
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from seqserve.loadtest.report import Summary, format_table, summarize
from seqserve.loadtest.runner import LoadSpec, Progress, run_model
from seqserve.loadtest.targets import PROTOCOLS, CallFailed, create_target
from seqserve.loadtest.texts import TextCycle, TextSourceError, load_texts
from seqserve.numbers import non_negative_float, positive_int

DEFAULT_TEXTS = Path("../shared/data/sarcasm/sarcasm.json")


@dataclass(frozen=True)
class LoadTestConfig:
    address: str
    metrics_url: str | None  # None: no server-side view
    models: tuple[str, ...]  # empty: every model the server lists
    protocol: str
    texts_path: Path
    spec: LoadSpec


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
    )


async def run_loadtest(config: LoadTestConfig, progress: Progress | None = None) -> list[Summary]:
    """Every chosen model in turn under the same load; one summary per model."""
    texts = TextCycle(load_texts(config.texts_path), config.spec.batch)
    target = create_target(config.protocol, config.address, config.spec.channels)
    try:
        models = list(config.models) or await target.list_models()
        return [
            summarize(await run_model(target, model, config.spec, texts, config.metrics_url, progress))
            for model in models
        ]
    finally:
        await target.close()


def _terminal_progress(line: str) -> None:
    sys.stderr.write("\r\033[K" + line)
    sys.stderr.flush()


def loadtest_main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    config = config_from_args(args)
    show_progress = sys.stderr.isatty() if args.progress is None else args.progress
    try:
        summaries = asyncio.run(run_loadtest(config, _terminal_progress if show_progress else None))
    except (OSError, TextSourceError) as error:
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
        "mode": "open" if spec.open_loop else "closed",
        **dataclasses.asdict(spec),
    }
