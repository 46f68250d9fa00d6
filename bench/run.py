"""The serving benchmark: in-process ONNX Runtime, the gRPC server with and without batching, and the
transport's ceiling (bench/echo_server.py), measured in one run with one load generator.

For every model of the repository: tokenize+inference in this process at batch 1 and 32; then the
server's latency and throughput at concurrency 1 and 32 (one text per request), once with dynamic
batching at the server's default queue delay and once with `--max-queue-delay-us 0`; with batching on,
also through the KServe V2 ModelInfer (tritonclient's asyncio client) next to the own Classify, so the
protocol's cost shows; then the no-op echo service. Each server is a separate process on free
loopback ports, started and stopped here. The targets below are computed from these same figures
and printed PASS/FAIL; the tables also go to reports/bench.md.

    .venv/bin/python -m bench.run [--models models] [--duration 5] [--warmup 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np
from google.protobuf import text_format
from tokenizers import Tokenizer

from seqserve.loadtest.cli import DEFAULT_TEXTS, LoadTestConfig, run_loadtest
from seqserve.loadtest.report import Summary
from seqserve.loadtest.runner import LoadSpec
from seqserve.loadtest.texts import load_texts
from seqserve.v1 import model_config_pb2
from serving.runtimes.onnx import OnnxRuntime
from serving.server import READY_PREFIX
from serving.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
CONCURRENCIES = (1, 32)
IN_PROCESS_BATCHES = (1, 32)
START_TIMEOUT_S = 120.0
# Targets
ECHO_SHARE = 0.70  # (a) server calls/s at concurrency 32 vs the echo service
BATCHING_GAIN = 2.0  # (b) texts/s with batching on vs off, most expensive model, concurrency 32
IN_PROCESS_GAP_MS = 1.0  # (c) server p50 at concurrency 1 minus in-process tokenize+inference
VERSIONS = ("grpcio", "protobuf", "onnxruntime", "tokenizers", "numpy", "prometheus-client")


@dataclass(frozen=True)
class ModelFiles:
    name: str
    version_dir: Path
    config: model_config_pb2.ModelConfig


def find_models(repository: Path) -> list[ModelFiles]:
    """The latest version of every model in the repository (the one the server answers with)."""
    found = []
    for model_dir in sorted(p for p in repository.iterdir() if p.is_dir()):
        versions = [p for p in model_dir.iterdir() if p.name.isdigit() and (p / "config.pbtxt").is_file()]
        if not versions:
            continue
        latest = max(versions, key=lambda p: int(p.name))
        config = text_format.Parse((latest / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        found.append(ModelFiles(model_dir.name, latest, config))
    return found


def in_process_ms(model: ModelFiles, repository: Path, texts: list[str], batch: int, seconds: float) -> float:
    """Median tokenize+inference time of one batch, with the server's own ONNX Runtime session setup."""
    tokenizer = Tokenizer.from_file(str(repository / model.config.tokenizer.path))
    runtime = OnnxRuntime(
        model.version_dir / (model.config.export.onnx_file or "model.onnx"),
        model.config,
        Settings().intra_op_threads,
    )
    timings = []
    deadline = time.perf_counter() + seconds
    for run in range(100_000):
        chunk = [texts[(run * batch + i) % len(texts)] for i in range(batch)]
        started = time.perf_counter()
        ids = np.array([e.ids for e in tokenizer.encode_batch(chunk)], dtype=np.int32)
        runtime.run(ids)
        timings.append(time.perf_counter() - started)
        if time.perf_counter() > deadline:
            break
    return 1e3 * float(np.median(timings[len(timings) // 10 :]))  # first runs warm the session


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def started(command: list[str], log_path: Path) -> Iterator[dict]:
    """Run a server process until its ready line; yields the line's JSON; SIGTERM (then kill) after."""
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=log, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        try:
            yield _wait_ready(process, log_path)
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _wait_ready(process: subprocess.Popen[str], log_path: Path) -> dict:
    deadline = time.monotonic() + START_TIMEOUT_S
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(READY_PREFIX):
            return json.loads(line[len(READY_PREFIX) :])
        if time.monotonic() > deadline:
            break
    raise RuntimeError(f"{process.args} did not become ready; see {log_path}")


@dataclass(frozen=True)
class Cell:
    target: str  # model name or "echo"
    batching: str  # "on", "off" or "-" (echo)
    concurrency: int
    summary: Summary
    protocol: str = "seqserve"  # the load generator's --protocol: "seqserve" (Classify) or "v2"


def measure(
    address: str,
    metrics_url: str | None,
    model: str,
    spec: LoadSpec,
    texts: Path,
    batching: str,
    protocol: str = "seqserve",
) -> list[Cell]:
    cells = []
    for concurrency in CONCURRENCIES:
        load = dataclasses.replace(spec, concurrency=concurrency)
        config = LoadTestConfig(address, metrics_url, (model,), protocol, texts, load)
        (summary,) = asyncio.run(run_loadtest(config))
        cells.append(Cell(model, batching, concurrency, summary, protocol))
        print(f"  {model:<18} {protocol:<8} batching {batching:<3} c={concurrency:<3} "
              f"{summary.requests_per_s:8.1f} req/s  p50 {summary.latency_ms['p50']:.2f} ms",
              flush=True)  # fmt: skip
    return cells


def serve_command(repository: Path, port: int, metrics_port: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "seqserve.cli", "serve", "--model-repository", str(repository),
        "--host", "127.0.0.1", "--port", str(port), "--metrics-port", str(metrics_port),
        "--log-level", "WARNING", *extra,
    ]  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    target: str
    passed: bool
    evidence: str


def verdicts(models: list[str], in_process: dict[str, dict[int, float]], cells: list[Cell]) -> list[Verdict]:
    def cell(target: str, batching: str, concurrency: int) -> Summary:
        return next(
            c.summary
            for c in cells
            if (c.target, c.batching, c.concurrency, c.protocol)
            == (target, batching, concurrency, "seqserve")
        )

    echo = cell("echo", "-", 32).requests_per_s
    results = []
    for model in models:
        served = cell(model, "on", 32).requests_per_s
        results.append(
            Verdict(
                f"(a) {model}: calls/s at concurrency 32 ≥ {ECHO_SHARE:.0%} of the echo service",
                served >= ECHO_SHARE * echo,
                f"{served:.0f} vs echo {echo:.0f} calls/s = {served / echo:.0%}",
            )
        )
    costliest = max(models, key=lambda m: in_process[m][1])
    on, off = cell(costliest, "on", 32).texts_per_s, cell(costliest, "off", 32).texts_per_s
    results.append(
        Verdict(
            f"(b) {costliest} (most expensive in process): batching on ≥ {BATCHING_GAIN:g}x the "
            "texts/s of batching off at concurrency 32",
            on >= BATCHING_GAIN * off,
            f"{on:.0f} texts/s on vs {off:.0f} off = {on / off:.2f}x",
        )
    )
    for model in models:
        local = in_process[model][1]
        for batching in ("on", "off"):
            p50 = cell(model, batching, 1).latency_ms["p50"]
            results.append(
                Verdict(
                    f"(c) {model}, batching {batching}: server p50 at concurrency 1 within "
                    f"{IN_PROCESS_GAP_MS:g} ms of in-process tokenize+inference",
                    p50 - local <= IN_PROCESS_GAP_MS,
                    f"{p50:.2f} ms over gRPC vs {local:.2f} ms in process: +{p50 - local:.2f} ms "
                    f"(echo service p50 {cell('echo', '-', 1).latency_ms['p50']:.2f} ms)",
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
    results: list[Verdict],
    spec: LoadSpec,
) -> str:
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in VERSIONS)
    lines = [
        "# Serving benchmark",
        "",
        f"- command: `{shlex.join(['.venv/bin/python', '-m', 'bench.run', *argv])}`",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {cpu_model()}, {os.cpu_count()} logical CPUs; load average (1, 5, 15 min) at start "
        f"{_loads(load_before)}, at end {_loads(os.getloadavg())}",
        f"- Python {platform.python_version()}, {versions}",
        f"- each cell: {spec.warmup_s:g} s warm-up, {spec.duration_s:g} s measured, one text per request, "
        f"{spec.channels} channels; server defaults except `--max-queue-delay-us 0` for batching off "
        f"(default {Settings().max_queue_delay_us} µs, max batch {Settings().max_batch_size}, "
        f"{Settings().inference_threads} inference threads)",
        "",
        "## In process (tokenize + ONNX Runtime, median ms per batch)",
        "",
        "| model | parameters | batch 1 | batch 32 | batch 32 per text |",
        "|---|---:|---:|---:|---:|",
    ]
    for model in models:
        times = in_process[model.name]
        lines.append(
            f"| {model.name} | {model.config.parameter_count:,} | {_fmt(times[1])} | {_fmt(times[32])} "
            f"| {_fmt(times[32] / 32, 3)} |"
        )
    lines += [
        "",
        "## Over gRPC (client-side latency in ms; server batch = mean texts per executed batch)",
        "",
        "| target | protocol | batching | concurrency | calls/s | texts/s | p50 | p99 | server p50 "
        "| server batch | client CPU | errors |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in cells:
        s = c.summary
        server_p50 = s.server_ms.get("request", {}).get("p50", math.nan)
        errors = ", ".join(f"{code} {n}" for code, n in s.errors.items()) or "none"
        lines.append(
            f"| {c.target} | {c.protocol} | {c.batching} | {c.concurrency} | {s.requests_per_s:.0f} "
            f"| {s.texts_per_s:.0f} "
            f"| {_fmt(s.latency_ms['p50'])} | {_fmt(s.latency_ms['p99'])} | {_fmt(server_p50)} "
            f"| {_fmt(s.server_mean_batch_size)} | {s.client_cpu_percent:.0f}% | {errors} |"
        )
    lines += protocol_cost(cells)
    lines += ["", "## Targets", ""]
    lines += [f"- **{'PASS' if v.passed else 'FAIL'}** {v.target}: {v.evidence}" for v in results]
    return "\n".join(lines) + "\n"


def protocol_cost(cells: list[Cell]) -> list[str]:
    """KServe V2 ModelInfer against the own Classify: same server, model, concurrency and batching."""
    own = {
        (c.target, c.concurrency): c.summary for c in cells if c.protocol == "seqserve" and c.batching == "on"
    }
    rows = [
        "",
        "## KServe V2 against the own API (batching on; V2 / Classify)",
        "",
        "| model | concurrency | Classify calls/s | V2 calls/s | V2 / Classify | Classify p50 | V2 p50 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in (c for c in cells if c.protocol == "v2"):
        base = own[(c.target, c.concurrency)]
        rows.append(
            f"| {c.target} | {c.concurrency} | {base.requests_per_s:.0f} | {c.summary.requests_per_s:.0f} "
            f"| {c.summary.requests_per_s / base.requests_per_s:.2f} | {_fmt(base.latency_ms['p50'])} "
            f"| {_fmt(c.summary.latency_ms['p50'])} |"
        )
    return rows


def _loads(loads: Sequence[float]) -> str:
    return " ".join(f"{x:.2f}" for x in loads)


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


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

    models = find_models(args.models) if args.models.is_dir() else []
    if not models:
        print(f"bench: no model in {args.models}/; train some first: `make train` (every sarcasm "
              "architecture) or `make serve` (a quick 3-epoch set)", file=sys.stderr)  # fmt: skip
        return 1
    load_before = os.getloadavg()
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
    logs = Path(os.environ.get("TMPDIR", "/tmp"))
    for batching, extra in (("on", ()), ("off", ("--max-queue-delay-us", "0"))):
        port, metrics_port = free_port(), free_port()
        with started(
            serve_command(args.models, port, metrics_port, *extra), logs / f"bench-server-{port}.log"
        ):
            protocols = ("seqserve", "v2") if batching == "on" else ("seqserve",)
            for model in models:
                for protocol in protocols:
                    cells += measure(
                        f"127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics",
                        model.name, spec, args.texts, batching, protocol,
                    )  # fmt: skip
    port = free_port()
    echo_command = [sys.executable, "-m", "bench.echo_server", "--port", str(port)]
    with started(echo_command, logs / f"bench-echo-{port}.log"):
        cells += measure(f"127.0.0.1:{port}", None, "echo", spec, args.texts, "-")

    results = verdicts([m.name for m in models], in_process, cells)
    report = markdown(args_list, load_before, models, in_process, cells, results, spec)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(report)
    print("\n" + report + f"\nwritten to {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
