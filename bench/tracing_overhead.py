"""What tracing costs the server: tracing off against the tree before it, and on at three sampling
ratios, side by side in one run.

Five servers on the same scratch repository: `baseline` (another source tree, e.g. `git archive` of
the commit before tracing), `off` (this tree, no OTEL_* variable), `on 1.0` (every call sampled,
OTEL_TRACES_SAMPLER=always_on), `on 0.1` and `on 0.01` (parentbased_traceidratio). The traced ones
export over OTLP/gRPC to a receiver in a process of its own (seqserve.loadtest.trace_receiver), so
receiving costs neither the servers nor the load generator. The client sends no traceparent: the
servers' own samplers decide. Cells and rounds are bench/peers/rounds.py's (server order rotated each
round); the report gives medians over rounds and each server's figures over `off`'s.

    .venv/bin/python -m bench.tracing_overhead --models models --baseline /tmp/seqserve-before
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench.harness import LOG_DIR, REPO_ROOT, free_port, start_seqserve
from bench.machine import write_report
from bench.models import find_models
from bench.peers.rounds import Cell, Measurement, run_rounds
from bench.peers.servers import SEQSERVE_PADDING, Served, scratch_repository
from bench.peers.tables import median_figures
from seqserve.loadtest.cli import DEFAULT_TEXTS
from seqserve.loadtest.runner import LoadSpec

REPORT = Path("reports/tracing_overhead.md")
PROTOCOL = "v2"


@contextlib.contextmanager
def receiver_process(log: Path) -> Iterator[str]:
    """An OTLP receiver in its own process; yields its endpoint; its span counts end up in `log`."""
    port = free_port()
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "seqserve.loadtest.trace_receiver", "--port", str(port)],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=output, text=True,
        )  # fmt: skip
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line.startswith("listening "):
                raise RuntimeError(f"the trace receiver did not start; see {log}")
            yield line.split()[1]
        finally:
            process.send_signal(signal.SIGINT)
            output.write(process.communicate(timeout=30)[0])


def markdown(
    command: str,
    spec: LoadSpec,
    rounds: int,
    measurements: Sequence[Measurement],
    names: Sequence[str],
    cells: Sequence[Cell],
    received: str,
    load: tuple[float, float],
) -> str:
    lines = [
        "# Tracing overhead",
        "",
        f"Command: `{command}`",
        "",
        f"Protocol {PROTOCOL} (KServe V2 ModelInfer through tritonclient), {spec.duration_s:g} s measured "
        f"per measurement after {spec.warmup_s:g} s warm-up, {spec.channels} channels, {rounds} "
        "interleaved rounds; medians over rounds. Ratio: over `off` in the same run.",
        "",
        "| cell | server | req/s | p50 ms | p99 ms | server CPU ms/req | req/s over off | p50 over off "
        "| server CPU over off |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cell in cells:
        figures = {
            name: median_figures([m for m in measurements if m.server == name and m.cell == cell])
            for name in names
        }
        off = figures["off"]
        for name in names:
            f = figures[name]
            throughput, median = f.requests_per_s / off.requests_per_s, f.p50_ms / off.p50_ms
            cpu = f.server_cpu_ms / off.server_cpu_ms
            lines.append(
                f"| {cell.label} | {name} | {f.requests_per_s:.0f} | {f.p50_ms:.2f} | {f.p99_ms:.2f} | "
                f"{f.server_cpu_ms:.3f} | {throughput:.3f} | {median:.3f} | {cpu:.3f} |"
            )
    lines += [
        "",
        f"Load average (1 min) before and after: {load[0]:.2f}, {load[1]:.2f} on {os.cpu_count()} CPUs.",
        f"Receiver: {received.strip() or 'no summary'}",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--models", type=Path, default=Path("models"), help="model repository [%(default)s]")
    add("--model", default="sarcasm-conv", help="the model measured [%(default)s]")
    add("--cells", default="1x1,32x1", help="concurrency x texts per request [%(default)s]")
    add("--baseline", type=Path, required=True, help="the source tree before tracing (e.g. `git archive`)")
    add("--rounds", type=int, default=3, help="interleaved rounds [%(default)s]")
    add("--duration", type=float, default=2.0, help="measured seconds per measurement [%(default)s]")
    add("--warmup", type=float, default=0.5, help="warm-up seconds per measurement [%(default)s]")
    add("--channels", type=int, default=4, help="client channels [%(default)s]")
    add("--texts", type=Path, default=DEFAULT_TEXTS, help="request texts [%(default)s]")
    add("--report", type=Path, default=REPORT, help="markdown report [%(default)s]")
    args = parser.parse_args(args_list)
    found = {m.name: m for m in find_models(args.models)} if args.models.is_dir() else {}
    if args.model not in found:
        print(f"tracing-overhead: {args.model} not in {args.models}/", file=sys.stderr)
        return 1
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    load_before = os.getloadavg()[0]
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        del os.environ[name]
    spec = LoadSpec(
        duration_s=args.duration, warmup_s=args.warmup, channels=args.channels, max_requests=200_000
    )
    cells = [Cell(args.model, *(int(n) for n in shape.split("x"))) for shape in args.cells.split(",")]
    receiver_log = LOG_DIR / "tracing-overhead-receiver.log"
    with tempfile.TemporaryDirectory(prefix="tracing-overhead-") as scratch, contextlib.ExitStack() as stack:
        repository = Path(scratch) / "models"
        scratch_repository([found[args.model]], args.models, repository)
        endpoint = stack.enter_context(receiver_process(receiver_log))
        exporting = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
        variants = {
            "baseline": ({}, args.baseline.resolve()),
            "off": ({}, REPO_ROOT),
            "on 1.0": ({**exporting, "OTEL_TRACES_SAMPLER": "always_on"}, REPO_ROOT),
            **{
                f"on {ratio}": (
                    {
                        **exporting,
                        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                        "OTEL_TRACES_SAMPLER_ARG": ratio,
                    },
                    REPO_ROOT,
                )
                for ratio in ("0.1", "0.01")
            },
        }
        servers = []
        for name, (variables, tree) in variants.items():
            label = "tracing-" + name.replace(" ", "-")
            server = stack.enter_context(start_seqserve(repository, label, cwd=tree, env=variables))
            servers.append(Served(name, server, (PROTOCOL,), 1, SEQSERVE_PADDING))
        print(
            f"tracing-overhead: {len(cells)} cells x {len(servers)} servers x {args.rounds} rounds",
            flush=True,
        )
        measurements = run_rounds(servers, cells, spec, args.texts, args.rounds)
    load = (load_before, os.getloadavg()[0])
    received = receiver_log.read_text().strip().splitlines()
    command = shlex.join([".venv/bin/python", "-m", "bench.tracing_overhead", *args_list])
    report = markdown(
        command,
        spec,
        args.rounds,
        measurements,
        list(variants),
        cells,
        received[-1] if received else "",
        load,
    )
    write_report(args.report, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
