"""The serving benchmark: in-process ONNX Runtime, the gRPC server with and without batching, and the
transport's ceiling (bench/echo_server.py), measured in one run with one load generator.

For every model of the repository: tokenize+inference in this process at batch 1 and 32; then the
server's latency and throughput at concurrency 1 and 32 (one text per request), once with dynamic
batching at the server's default queue delay and once with `--max-queue-delay-us 0`; with batching on,
also through the KServe V2 ModelInfer (tritonclient's asyncio client) and through KServe V2 REST (JSON
over aiohttp) next to the own Classify, so each protocol's cost shows; and right after each model, the
no-op echo service at concurrency 32, so that every model is compared with an echo measured under the
same load from other processes. The three servers (batching on, off, echo) are separate processes on
free loopback ports, started together here (an idle one costs nothing); their CPU time is read from
/proc around every cell. When TensorFlow is installed, the most expensive model is also served with
`--runtime tf`, batching on and off, to show what batching does for a runtime with a large per-call
cost. The targets are computed from these same figures and printed PASS/FAIL, each throughput target
next to the ceiling the CPUs allow (bench/cpu_budget.py); the tables also go to reports/bench.md.

    .venv/bin/python -m bench.run [--models models] [--duration 5] [--warmup 1]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.cpu_budget import CpuBudget
from bench.harness import start_echo, start_seqserve
from bench.in_process import load_in_process
from bench.machine import cpu_model, loads_text, now_text, versions, write_report
from bench.models import ModelFiles, copy_tokenizer, find_models
from bench.served import Cell, measure
from bench.targets import TargetResult
from seqserve.loadtest.cli import DEFAULT_TEXTS
from seqserve.loadtest.report import Summary
from seqserve.loadtest.runner import LoadSpec
from seqserve.loadtest.texts import load_texts
from serving.settings import Settings

IN_PROCESS_BATCHES = (1, 32)
# Targets
ECHO_SHARE = 0.70  # (a) server calls/s at concurrency 32 vs the echo service
BATCHING_GAIN = 2.0  # (b) texts/s with batching on vs off, most expensive model, concurrency 32
IN_PROCESS_GAP_MS = 1.0  # (c) server p50 at concurrency 1 minus in-process tokenize+inference
VERSIONS = ("grpcio", "protobuf", "onnxruntime", "tokenizers", "numpy", "prometheus-client")


def in_process_ms(model: ModelFiles, repository: Path, texts: list[str], batch: int, seconds: float) -> float:
    """Median tokenize+inference time of one batch, with the server's own encoder, padding and ONNX Runtime
    setup."""
    served = load_in_process(model.version_dir, model.config, repository)
    timings = []
    deadline = time.perf_counter() + seconds
    for run in range(100_000):
        chunk = [texts[(run * batch + i) % len(texts)] for i in range(batch)]
        started = time.perf_counter()
        served.predict(chunk)
        timings.append(time.perf_counter() - started)
        if time.perf_counter() > deadline:
            break
    return 1e3 * float(np.median(timings[len(timings) // 10 :]))  # first runs warm the session


def tensorflow_batching(model: ModelFiles, repository: Path, spec: LoadSpec, texts: Path) -> list[Cell]:
    """Batching on and off at concurrency 32 with `--runtime tf`, on a repository of this model alone
    (loading all of them into TensorFlow would take minutes); nothing when TensorFlow is absent."""
    saved_model = model.version_dir / (model.config.export.saved_model_dir or "saved_model")
    if importlib.util.find_spec("tensorflow") is None or not saved_model.is_dir():
        print(f"bench: no TensorFlow runtime for {model.name}; skipping its --runtime tf cells", flush=True)
        return []
    cells = []
    with tempfile.TemporaryDirectory(prefix="bench-tf-") as scratch:
        alone = Path(scratch)
        shutil.copytree(model.version_dir, alone / model.name / model.version_dir.name)
        copy_tokenizer(model.config, repository, alone)
        for batching, extra in (("on", ()), ("off", ("--max-queue-delay-us", "0"))):
            with start_seqserve(alone, "server-tf", "--runtime", "tf", *extra) as server:
                cells += measure(server, model.name, spec, texts, batching, runtime="tf", concurrencies=(32,))
    return cells


def cheapest_ms_per_text(times: dict[int, float]) -> float:
    """In-process tokenize+inference cost per text at the batch size where it is lowest."""
    return min(ms / batch for batch, ms in times.items())


def costliest_model(in_process: dict[str, dict[int, float]]) -> str:
    return max(in_process, key=lambda m: in_process[m][1])


def find_cell(cells: list[Cell], target: str, batching: str, concurrency: int, runtime: str = "onnx") -> Cell:
    return next(
        c
        for c in cells
        if (c.target, c.batching, c.concurrency, c.protocol, c.runtime, c.beside)
        == (target, batching, concurrency, "seqserve", runtime, "")
    )


def echo_beside(cells: list[Cell], model: str) -> Cell:
    """The echo at concurrency 32 measured right after `model`; the reference one if there is none."""
    beside = [c for c in cells if c.target == "echo" and c.beside == model]
    return beside[0] if beside else find_cell(cells, "echo", "-", 32, runtime="-")


def echo_budget(cells: list[Cell], model: str) -> CpuBudget:
    echo = echo_beside(cells, model)
    return CpuBudget.from_echo(
        echo.summary.requests_per_s, echo.summary.client_cpu_percent, echo.server_cpu_percent
    )


def verdicts(
    models: list[str], in_process: dict[str, dict[int, float]], cells: list[Cell]
) -> list[TargetResult]:
    def cell(target: str, batching: str, concurrency: int, runtime: str = "onnx") -> Summary:
        return find_cell(cells, target, batching, concurrency, runtime).summary

    results = []
    for model in models:
        budget = echo_budget(cells, model)
        echo = budget.echo_calls_per_s
        served = cell(model, "on", 32).requests_per_s
        ceiling = budget.ceiling_calls_per_s(cheapest_ms_per_text(in_process[model]))
        results.append(
            TargetResult(
                f"(a) {model}: calls/s at concurrency 32 ≥ {ECHO_SHARE:.0%} of the echo service",
                served >= ECHO_SHARE * echo,
                f"{served:.0f} vs echo {echo:.0f} calls/s (measured beside it) = {served / echo:.0%}; "
                f"the CPUs allow at most {ceiling:.0f} = {ceiling / echo:.0%}",
                out_of_reach=ceiling < ECHO_SHARE * echo,
            )
        )
    costliest = costliest_model(in_process)
    batch_gain = in_process[costliest][1] * 32 / in_process[costliest][32]
    notes = {
        "onnx": f"; in process, ONNX Runtime's cost per text is {batch_gain:.2f}x lower at batch 32 than at 1"
    }
    for runtime in ("onnx", "tf"):
        if not any(c.target == costliest and c.runtime == runtime for c in cells):  # no TensorFlow here
            continue
        on, off = (cell(costliest, batching, 32, runtime).texts_per_s for batching in ("on", "off"))
        results.append(
            TargetResult(
                f"(b) {costliest} (most expensive in process), runtime {runtime}: batching on ≥ "
                f"{BATCHING_GAIN:g}x the texts/s of batching off at concurrency 32",
                on >= BATCHING_GAIN * off,
                f"{on:.0f} texts/s on vs {off:.0f} off = {on / off:.2f}x{notes.get(runtime, '')}",
            )
        )
    for model in models:
        local = in_process[model][1]
        for batching in ("on", "off"):
            p50 = cell(model, batching, 1).latency_ms["p50"]
            results.append(
                TargetResult(
                    f"(c) {model}, batching {batching}: server p50 at concurrency 1 within "
                    f"{IN_PROCESS_GAP_MS:g} ms of in-process tokenize+inference",
                    p50 - local <= IN_PROCESS_GAP_MS,
                    f"{p50:.2f} ms over gRPC vs {local:.2f} ms in process: +{p50 - local:.2f} ms "
                    f"(echo service p50 {cell('echo', '-', 1, '-').latency_ms['p50']:.2f} ms)",
                )
            )
    return results


def _fmt(value: float, digits: int = 2) -> str:
    return "-" if not math.isfinite(value) else f"{value:.{digits}f}"


def markdown(
    argv: Sequence[str],
    load_before: tuple[float, ...],
    models: list[ModelFiles],
    in_process: dict[str, dict[int, float]],
    cells: list[Cell],
    results: list[TargetResult],
    spec: LoadSpec,
) -> str:
    lines = [
        "# Serving benchmark",
        "",
        f"- command: `{shlex.join(['.venv/bin/python', '-m', 'bench.run', *argv])}`",
        f"- date: {now_text()}",
        f"- machine: {cpu_model()}, {os.cpu_count()} logical CPUs; load average (1, 5, 15 min) at start "
        f"{loads_text(load_before)}, at end {loads_text(os.getloadavg())}",
        f"- Python {platform.python_version()}, {versions(VERSIONS)}",
        f"- each cell: {spec.warmup_s:g} s warm-up, {spec.duration_s:g} s measured, one text per request, "
        f"{spec.channels} channels; server defaults except `--max-queue-delay-us 0` for batching off "
        f"(default {Settings().max_queue_delay_us} µs, max batch {Settings().max_batch_size}, "
        f"{Settings().inference_threads} inference threads)",
        "",
        "## In process (tokenize + ONNX Runtime, median ms per batch)",
        "",
        "| model | parameters | batch 1 | batch 32 | batch 32 per text | batch 32 gain per text |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for model in models:
        times = in_process[model.name]
        lines.append(
            f"| {model.name} | {model.config.parameter_count:,} | {_fmt(times[1])} | {_fmt(times[32])} "
            f"| {_fmt(times[32] / 32, 3)} | {times[1] * 32 / times[32]:.2f}x |"
        )
    lines += [
        "",
        "## Over gRPC (client-side latency in ms; server batch = mean texts per executed batch)",
        "",
        "CPU is % of one CPU; CPU per call = (client + server CPU time) / successful calls.",
        "",
        "| target | runtime | protocol | batching | concurrency | calls/s | texts/s | p50 | p99 | server p50 "
        "| server batch | client CPU | server CPU | CPU per call (ms) | errors |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in cells:
        s = c.summary
        lines.append(
            f"| {c.label} | {c.runtime} | {c.protocol} | {c.batching} | {c.concurrency} "
            f"| {s.requests_per_s:.0f} | {s.texts_per_s:.0f} "
            f"| {_fmt(s.latency_ms['p50'])} | {_fmt(s.latency_ms['p99'])} | {_fmt(s.server_request_p50_ms)} "
            f"| {_fmt(s.server_mean_batch_size)} | {s.client_cpu_percent:.0f}% | {c.server_cpu_percent:.0f}% "
            f"| {_fmt(c.cpu_ms_per_call, 3)} | {s.errors_text} |"
        )
    lines += protocol_cost(cells)
    lines += cpu_ceilings(models, in_process, cells)
    lines += ["", "## Targets", ""]
    lines += [v.line() for v in results]
    return "\n".join(lines) + "\n"


def protocol_cost(cells: list[Cell]) -> list[str]:
    """KServe V2 over gRPC (ModelInfer) and over REST against the own Classify: same server, model,
    concurrency and batching."""
    by_protocol: dict[str, dict[tuple[str, int], Summary]] = {}
    for c in cells:
        if (c.batching, c.runtime) == ("on", "onnx"):
            by_protocol.setdefault(c.protocol, {})[(c.target, c.concurrency)] = c.summary
    own, v2, rest = (by_protocol.get(p, {}) for p in ("seqserve", "v2", "rest"))

    def calls(summary: Summary | None) -> str:
        return "-" if summary is None else f"{summary.requests_per_s:.0f}"

    def ratio(a: Summary | None, b: Summary | None) -> str:
        return "-" if a is None or b is None else f"{a.requests_per_s / b.requests_per_s:.2f}"

    def p50(summary: Summary | None) -> str:
        return "-" if summary is None else _fmt(summary.latency_ms["p50"])

    rows = [
        "",
        "## KServe V2 over gRPC and REST against the own API (batching on)",
        "",
        "| model | concurrency | Classify calls/s | V2 gRPC calls/s | V2 gRPC / Classify | REST calls/s "
        "| REST / V2 gRPC | Classify p50 | V2 gRPC p50 | REST p50 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in sorted(set(v2) | set(rest)):
        base, grpc_v2, http = own.get(key), v2.get(key), rest.get(key)
        rows.append(
            f"| {key[0]} | {key[1]} | {calls(base)} | {calls(grpc_v2)} | {ratio(grpc_v2, base)} "
            f"| {calls(http)} | {ratio(http, grpc_v2)} | {p50(base)} | {p50(grpc_v2)} | {p50(http)} |"
        )
    return rows


def cpu_ceilings(
    models: list[ModelFiles], in_process: dict[str, dict[int, float]], cells: list[Cell]
) -> list[str]:
    """Each model's concurrency-32 throughput against the most its CPUs allow (bench/cpu_budget.py)."""
    cpus = os.cpu_count() or 1
    rows = [
        "",
        f"## What {cpus} CPUs allow (batching on, concurrency 32)",
        "",
        "A call to the echo service costs the CPU time below (load generator + server, measured beside the "
        f"model). With the model's cheapest in-process cost per text on top, {cpus} CPUs allow at most the "
        "ceiling, even for a server with no overhead of its own on a machine with no other load "
        "(bench/cpu_budget.py).",
        "",
        "| model | echo CPU per call (ms) | compute per text (ms) | ceiling calls/s | echo calls/s "
        "| ceiling / echo | calls/s | calls/s / ceiling | CPU per call (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model in models:
        budget = echo_budget(cells, model.name)
        compute = cheapest_ms_per_text(in_process[model.name])
        served = find_cell(cells, model.name, "on", 32)
        ceiling = budget.ceiling_calls_per_s(compute)
        rows.append(
            f"| {model.name} | {budget.echo_cpu_ms_per_call:.3f} | {compute:.3f} | {ceiling:.0f} "
            f"| {budget.echo_calls_per_s:.0f} | {ceiling / budget.echo_calls_per_s:.0%} "
            f"| {served.summary.requests_per_s:.0f} | {served.summary.requests_per_s / ceiling:.0%} "
            f"| {_fmt(served.cpu_ms_per_call, 3)} |"
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=Path("models"), help="model repository [%(default)s]")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell [%(default)s]")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per cell [%(default)s]")
    parser.add_argument("--in-process-seconds", type=float, default=2.0, help="per model and batch size")
    parser.add_argument("--channels", type=int, default=LoadSpec().channels, help="gRPC channels")
    parser.add_argument(
        "--texts", type=Path, default=DEFAULT_TEXTS, help="request texts (see seqserve loadtest)"
    )
    parser.add_argument("--report", type=Path, default=Path("reports/bench.md"), help="markdown output")
    args = parser.parse_args(args_list)

    models = find_models(args.models)
    if not models:
        print(f"bench: no model in {args.models}/; train some first: `make train` (every sarcasm "
              "architecture) or `make serve` (a quick 3-epoch set)", file=sys.stderr)  # fmt: skip
        return 1
    load_before = os.getloadavg()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # as `seqserve serve` runs them (serving/cli.py)
    texts = load_texts(args.texts)
    spec = LoadSpec(duration_s=args.duration, warmup_s=args.warmup, channels=args.channels)
    print(f"bench: {len(models)} models, load average {load_before[0]:.2f}", flush=True)

    in_process = {
        m.name: {
            b: in_process_ms(m, args.models, texts, b, args.in_process_seconds) for b in IN_PROCESS_BATCHES
        }
        for m in models
    }
    cells: list[Cell] = []
    with contextlib.ExitStack() as servers:
        batching_on = servers.enter_context(start_seqserve(args.models, "server"))
        batching_off = servers.enter_context(
            start_seqserve(args.models, "server", "--max-queue-delay-us", "0")
        )
        echo = servers.enter_context(start_echo("echo"))
        cells += measure(echo, "echo", spec, args.texts, "-", runtime="-")
        for model in models:
            for protocol in ("seqserve", "v2", "rest"):
                cells += measure(batching_on, model.name, spec, args.texts, "on", protocol)
            cells += measure(batching_off, model.name, spec, args.texts, "off")
            cells += measure(
                echo, "echo", spec, args.texts, "-", runtime="-", concurrencies=(32,), beside=model.name
            )
    costliest = next(m for m in models if m.name == costliest_model(in_process))
    cells += tensorflow_batching(costliest, args.models, spec, args.texts)

    results = verdicts([m.name for m in models], in_process, cells)
    write_report(args.report, markdown(args_list, load_before, models, in_process, cells, results, spec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
