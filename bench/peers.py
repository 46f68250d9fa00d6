"""seqserve against the peer a user would pick instead: KServe's Python ModelServer, same client, one run.

Both serve the same ONNX files with the same tokenizer.json (a scratch repository holding only the
chosen models; the peer gets a manifest of the same files, bench/kserve_peer.py, run from its own
virtualenv because kserve and tritonclient cannot share a process). This process is the load
generator and never imports kserve: every server gets the same tritonclient.grpc.aio ModelInfer
client (seqserve loadtest's V2 target), and seqserve's own API and the floor's get `seqserve
loadtest`'s Classify client. The floor is bench/echo_server.py, a no-op on the same grpc.aio stack.

Per round, each cell (model, concurrency, texts per request) measures every server in turn, the order
rotated from round to round; each measurement is a warm-up, then a measured phase with the servers'
CPU time read from /proc around it (every process of a server: `--workers` ones have several). The
report gives the median over rounds, the targets of the comparison, and for each target missed what
bounds it (the floor measured beside it). RSS per process is read after the last round.

    .venv/bin/python -m bench.peers --models models --kserve-python .venv-kserve/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from bench.harness import LOG_DIR, REPO_ROOT, ServerProcess, free_port, start_echo, start_seqserve
from bench.machine import cpu_model, loads_text, now_text, write_report
from bench.models import ModelFiles, copy_tokenizer, find_models
from bench.targets import TargetResult
from seqserve.loadtest.cli import DEFAULT_TEXTS
from seqserve.loadtest.report import Summary, summarize
from seqserve.loadtest.runner import LoadSpec, run_model
from seqserve.loadtest.targets import create_target
from seqserve.loadtest.texts import TextCycle, load_texts
from seqserve.v1 import model_config_pb2

REPORT = Path("reports/peers.md")
KSERVE_PEER = REPO_ROOT / "bench" / "kserve_peer.py"
KSERVE_REQUIREMENTS = REPO_ROOT / "bench" / "kserve_peer_requirements.txt"
KSERVE = "KServe"
FLOOR = "no-op floor"
BASELINE = "seqserve baseline"
WHOLE_OVER_WORKER_RSS = 2.2  # --workers 2: the whole server's RSS against one worker's


@dataclass(frozen=True)
class Target:
    """seqserve's figure over KServe's in one cell shape, at most (or at least) `limit`."""

    name: str
    shape: tuple[int, int]
    metric: str  # a field of Figures
    limit: float
    higher_is_better: bool
    unit: str

    def met(self, ratio: float) -> bool:
        return ratio >= self.limit if self.higher_is_better else ratio <= self.limit


TARGETS = (
    Target("c=1 p50", (1, 1), "p50_ms", 0.8, False, "ms"),
    Target("c=32 req/s", (32, 1), "requests_per_s", 2.0, True, "req/s"),
    Target("server CPU per request at c=32", (32, 1), "server_cpu_ms", 0.5, False, "ms"),
    Target("c=32 p99", (32, 1), "p99_ms", 0.6, False, "ms"),
    Target("texts/s at c=8 with 32 texts/request", (8, 32), "texts_per_s", 4.0, True, "texts/s"),
)


@dataclass(frozen=True)
class Cell:
    model: str
    concurrency: int
    batch: int

    @property
    def label(self) -> str:
        return f"{self.model}, c={self.concurrency}, {self.batch} text{'s' if self.batch > 1 else ''}/request"


@dataclass(frozen=True)
class Served:
    """One server under test, by the name the report gives it."""

    name: str
    server: ServerProcess
    protocols: tuple[str, ...]  # the loadtest protocols it speaks


@dataclass(frozen=True)
class Measurement:
    server: str
    protocol: str
    cell: Cell
    round: int
    summary: Summary
    server_cpu_s: float  # every process of the server, during the measured phase

    @property
    def server_cpu_ms_per_request(self) -> float:
        return 1e3 * self.server_cpu_s / self.summary.ok if self.summary.ok else float("nan")


@dataclass(frozen=True)
class Figures:
    """Medians over rounds of one server, protocol and cell."""

    requests_per_s: float
    texts_per_s: float
    p50_ms: float
    p99_ms: float
    server_cpu_ms: float
    client_cpu_percent: float
    errors: int


def median_figures(measurements: Sequence[Measurement]) -> Figures:
    def med(value: Callable[[Measurement], float]) -> float:
        return statistics.median(value(m) for m in measurements)

    return Figures(
        requests_per_s=med(lambda m: m.summary.requests_per_s),
        texts_per_s=med(lambda m: m.summary.texts_per_s),
        p50_ms=med(lambda m: m.summary.latency_ms["p50"]),
        p99_ms=med(lambda m: m.summary.latency_ms["p99"]),
        server_cpu_ms=med(lambda m: m.server_cpu_ms_per_request),
        client_cpu_percent=med(lambda m: m.summary.client_cpu_percent),
        errors=sum(sum(m.summary.errors.values()) for m in measurements),
    )


def medians(measurements: Sequence[Measurement]) -> dict[tuple[str, str, Cell], Figures]:
    groups: dict[tuple[str, str, Cell], list[Measurement]] = {}
    for m in measurements:
        groups.setdefault((m.server, m.protocol, m.cell), []).append(m)
    return {key: median_figures(group) for key, group in groups.items()}


def scratch_repository(models: Sequence[ModelFiles], source: Path, into: Path) -> list[dict]:
    """Copy each model's latest config, ONNX file and tokenizer into a repository of only these models;
    returns the peer's manifest of the very same files."""
    manifest = []
    for model in models:
        config = model.config
        onnx_name = config.export.onnx_file or "model.onnx"
        version_dir = into / model.name / model.version_dir.name
        version_dir.mkdir(parents=True)
        shutil.copy2(model.version_dir / "config.pbtxt", version_dir / "config.pbtxt")
        shutil.copy2(model.version_dir / onnx_name, version_dir / onnx_name)
        tokenizer = copy_tokenizer(config, source, into)
        manifest.append(
            {
                "name": model.name,
                "onnx": str(version_dir / onnx_name),
                "tokenizer": str(tokenizer),
                "sigmoid": config.output_kind == model_config_pb2.OUTPUT_KIND_SIGMOID,
            }
        )
    return manifest


def start_kserve(python: str, manifest: Path, models: Sequence[str]) -> ServerProcess:
    """The KServe peer, ready once every model answers ModelReady (it prints no ready line)."""
    import tritonclient.grpc as triton  # the sync client, for the readiness poll only

    port = free_port()
    address = f"127.0.0.1:{port}"

    def every_model_ready(process: subprocess.Popen[str], deadline: float) -> dict | None:
        client = triton.InferenceServerClient(address)
        try:
            while process.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(Exception):  # not listening yet
                    if all(client.is_model_ready(name) for name in models):
                        return {"grpc_address": address, "pid": process.pid}
                time.sleep(0.2)
            return None
        finally:
            client.close()

    command = [python, str(KSERVE_PEER), "--manifest", str(manifest)]
    command += ["--grpc_port", str(port), "--http_port", str(free_port())]
    return ServerProcess(command, LOG_DIR / "bench-peers-kserve.log", probe=every_model_ready)


async def measure_one(
    served: Served, protocol: str, cell: Cell, spec: LoadSpec, texts: TextCycle, round_: int
) -> Measurement:
    load = dataclasses.replace(spec, concurrency=cell.concurrency, batch=cell.batch, warmup_s=0.0)
    target = create_target(protocol, served.server.address, spec.channels)
    try:
        if spec.warmup_s > 0:
            await run_model(
                target, cell.model, dataclasses.replace(load, duration_s=spec.warmup_s), texts, None
            )
        cpu_before = served.server.cpu_seconds()
        run = await run_model(target, cell.model, load, texts, None)
        cpu = served.server.cpu_seconds() - cpu_before
    finally:
        await target.close()
    return Measurement(served.name, protocol, cell, round_, summarize(run), cpu)


def run_rounds(
    servers: Sequence[Served], cells: Sequence[Cell], spec: LoadSpec, texts_path: Path, rounds: int
) -> list[Measurement]:
    """Every cell on every server and protocol, `rounds` times, server order rotated each round."""
    pairs = [
        (served, protocol)
        for protocol in ("v2", "seqserve")
        for served in servers
        if protocol in served.protocols
    ]
    corpus = load_texts(texts_path)
    results = []
    for round_ in range(rounds):
        for cell in cells:
            texts = TextCycle(corpus, cell.batch)
            shift = round_ % len(pairs)
            for served, protocol in pairs[shift:] + pairs[:shift]:
                m = asyncio.run(measure_one(served, protocol, cell, spec, texts, round_))
                s = m.summary
                print(
                    f"  round {round_ + 1} {cell.label:<40} {served.name:<14} {protocol:<8} "
                    f"{s.requests_per_s:8.0f} req/s  p50 {s.latency_ms['p50']:6.2f} ms  "
                    f"p99 {s.latency_ms['p99']:6.2f} ms  server CPU {m.server_cpu_ms_per_request:.3f} ms/req",
                    flush=True,
                )
                results.append(m)
    return results


def verdicts(
    figures: dict[tuple[str, str, Cell], Figures], models: Sequence[str], seqserve: str
) -> list[TargetResult]:
    """Each target per model: `seqserve` (one of its servers) against KServe in the same cell, with
    the floor beside it: a ratio the no-op floor itself does not reach is bounded by the transport and
    the client, not by the server."""
    results = []
    for model in models:
        for target in TARGETS:
            cell = Cell(model, *target.shape)
            if any((s, "v2", cell) not in figures for s in (seqserve, KSERVE, FLOOR)):
                continue  # a cell `--cells` left out
            ours, peer, floor = (
                getattr(figures[(s, "v2", cell)], target.metric) for s in (seqserve, KSERVE, FLOOR)
            )
            ratio = ours / peer
            client = figures[(FLOOR, "v2", cell)].client_cpu_percent
            bound = "≥" if target.higher_is_better else "≤"
            results.append(
                TargetResult(
                    f"{model}: {target.name} {bound} {target.limit:g}x KServe",
                    target.met(ratio),
                    f"{ours:.4g} vs {peer:.4g} {target.unit} = {ratio:.2f}x; the no-op floor: {floor:.4g} "
                    f"{target.unit} = {floor / peer:.2f}x KServe, its client at {client:.0f}% of a CPU",
                )
            )
    return results


def ab_table(
    figures: dict[tuple[str, str, Cell], Figures], cells: Sequence[Cell], seqserve: str
) -> list[str]:
    """This tree's server over the baseline's, cell by cell and protocol by protocol."""
    rows = [
        "",
        f"## {seqserve} against the baseline tree (this / baseline)",
        "",
        "| cell | protocol | server CPU per request | p50 | p99 | req/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for cell in cells:
        for protocol in ("v2", "seqserve"):
            ours, base = figures.get((seqserve, protocol, cell)), figures.get((BASELINE, protocol, cell))
            if ours is None or base is None:
                continue
            rows.append(
                f"| {cell.label} | {protocol} | {ours.server_cpu_ms / base.server_cpu_ms:.3f} "
                f"| {ours.p50_ms / base.p50_ms:.3f} | {ours.p99_ms / base.p99_ms:.3f} "
                f"| {ours.requests_per_s / base.requests_per_s:.3f} |"
            )
    return rows


@dataclass(frozen=True)
class Memory:
    server: str
    rss_mib: list[float]  # each process: the first is the one started, then its workers


def memory(served: Served) -> Memory:
    return Memory(served.name, [rss / 2**20 for rss in served.server.rss_bytes()])


def peer_versions() -> str:
    pins = dict(line.split("==", 1) for line in KSERVE_REQUIREMENTS.read_text().splitlines() if "==" in line)
    return ", ".join(f"{name} {pins[name]}" for name in ("kserve", "grpcio", "onnxruntime", "tokenizers"))


def markdown(
    command: str,
    spec: LoadSpec,
    rounds: int,
    load: tuple[tuple[float, ...], tuple[float, ...]],
    measurements: Sequence[Measurement],
    servers: Sequence[Served],
    seqserve: str,
    models: Sequence[str],
    memories: Sequence[Memory],
) -> str:
    figures = medians(measurements)
    cells = list(dict.fromkeys(m.cell for m in measurements))

    lines = [
        "# seqserve against KServe's Python ModelServer, same client, same run",
        "",
        f"- command: `{command}`",
        f"- date: {now_text()}; machine: {cpu_model()}, {os.cpu_count()} logical "
        "CPUs shared by the servers and the load generator; load average (1, 5, 15 min) at start "
        f"{loads_text(load[0])}, at end {loads_text(load[1])}",
        f"- seqserve: grpcio {metadata.version('grpcio')}, onnxruntime {metadata.version('onnxruntime')}; "
        f"peer: {peer_versions()} (bench/kserve_peer.py); client: tritonclient "
        f"{metadata.version('tritonclient')} grpc.aio ModelInfer for V2, `seqserve loadtest` for seqserve.v1 "
        "Classify",
        f"- {rounds} interleaved rounds, each measurement {spec.warmup_s:g} s warm-up + "
        f"{spec.duration_s:g} s measured, {spec.channels} channel(s), closed loop; figures are medians over "
        "rounds; server CPU is every process of the server during the measured phase, from /proc, per "
        "successful request",
        "",
        "| cell | server | protocol | req/s | texts/s | p50 ms | p99 ms | server CPU ms/req | client CPU "
        "| errors |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    order = [(s.name, p) for p in ("v2", "seqserve") for s in servers if p in s.protocols]
    for cell in cells:
        for server, protocol in order:
            f = figures.get((server, protocol, cell))
            if f is None:
                continue
            lines.append(
                f"| {cell.label} | {server} | {'V2 ModelInfer' if protocol == 'v2' else 'Classify'} "
                f"| {f.requests_per_s:.0f} | {f.texts_per_s:.0f} | {f.p50_ms:.2f} | {f.p99_ms:.2f} "
                f"| {f.server_cpu_ms:.3f} | {f.client_cpu_percent:.0f}% | {f.errors} |"
            )
    names = {s.name for s in servers}
    if KSERVE in names:
        lines += ["", f"## Targets ({seqserve} against KServe, V2 ModelInfer)", ""]
        lines += [v.line() for v in verdicts(figures, models, seqserve)]
    if BASELINE in names:
        lines += ab_table(figures, cells, seqserve)
    lines += [
        "",
        "## Memory after the run (RSS, MiB)",
        "",
        "| server | processes | RSS each | whole |",
        "|---|---:|---|---:|",
    ]
    for m in memories:
        each = ", ".join(f"{r:.0f}" for r in m.rss_mib)
        lines.append(f"| {m.server} | {len(m.rss_mib)} | {each} | {sum(m.rss_mib):.0f} |")
    lines += [
        "",
        *(worker_memory(m) for m in memories if len(m.rss_mib) > 1 and m.server.startswith("seqserve")),
    ]
    return "\n".join(lines) + "\n"


def worker_memory(memory: Memory) -> str:
    """A `--workers` server: its supervisor (the first process) and workers against one worker."""
    supervisor, *workers = memory.rss_mib
    worker = statistics.mean(workers)
    whole = sum(memory.rss_mib)
    return (
        f"- {memory.server}: supervisor {supervisor:.0f} MiB, {len(workers)} workers {worker:.0f} MiB each; "
        f"the whole server is {whole / worker:.2f}x one worker's RSS (target ≤ {WHOLE_OVER_WORKER_RSS:g}x)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--models", type=Path, default=Path("models"), help="model repository [%(default)s]")
    add("--model", default="sarcasm-conv,sarcasm-lstm", help="models to compare [%(default)s]")
    add("--cells", default="1x1,32x1,8x32", help="concurrency x texts per request, per model [%(default)s]")
    add(
        "--kserve-python",
        default=".venv-kserve/bin/python",
        help="the peer virtualenv's python [%(default)s]",
    )
    add("--workers", default="1,2", help="seqserve server processes, one server per count [%(default)s]")
    add("--rounds", type=int, default=3, help="interleaved rounds [%(default)s]")
    add("--duration", type=float, default=2.5, help="measured seconds per measurement [%(default)s]")
    add("--warmup", type=float, default=0.5, help="warm-up seconds per measurement [%(default)s]")
    add(
        "--channels",
        type=int,
        default=4,
        help="client channels (connections), each request on the next [%(default)s]",
    )
    add("--texts", type=Path, default=DEFAULT_TEXTS, help="request texts [%(default)s]")
    add(
        "--baseline",
        type=Path,
        help="another seqserve source tree (e.g. `git archive main`) served beside, as `seqserve baseline`, "
        "for an A/B of a change in the same run",
    )
    add("--baseline-args", default="", help="`seqserve serve` flags of the baseline (an A/B of a setting)")
    add("--report", type=Path, default=REPORT, help="markdown report [%(default)s]")
    args = parser.parse_args(args_list)

    names = [name for name in args.model.split(",") if name]
    found = {m.name: m for m in find_models(args.models)}
    missing = [name for name in names if name not in found]
    if missing:
        print(
            f"bench-peers: {', '.join(missing)} not in {args.models}/ (train them: `make train`)",
            file=sys.stderr,
        )
        return 1
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    load_before = os.getloadavg()
    spec = LoadSpec(
        duration_s=args.duration, warmup_s=args.warmup, channels=args.channels, max_requests=200_000
    )
    shapes = [tuple(int(n) for n in shape.split("x")) for shape in args.cells.split(",")]
    cells = [Cell(name, c, b) for name in names for c, b in shapes]
    workers = [int(n) for n in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as scratch, contextlib.ExitStack() as stack:
        repository = Path(scratch) / "models"
        manifest = Path(scratch) / "kserve-peer.json"
        manifest.write_text(
            json.dumps(scratch_repository([found[n] for n in names], args.models, repository))
        )
        both = ("v2", "seqserve")
        servers = []
        for count in workers:
            extra = ("--workers", str(count)) if count > 1 else ()
            server = stack.enter_context(start_seqserve(repository, "peers-seqserve", *extra))
            servers.append(Served(f"seqserve N={count}", server, both))
        if args.baseline is not None or args.baseline_args:
            tree = args.baseline.resolve() if args.baseline is not None else REPO_ROOT
            baseline = start_seqserve(
                repository, "peers-baseline", *shlex.split(args.baseline_args), cwd=tree
            )
            servers.append(Served(BASELINE, stack.enter_context(baseline), both))
        if args.kserve_python:
            peer = start_kserve(args.kserve_python, manifest, names)
            servers.append(Served(KSERVE, stack.enter_context(peer), ("v2",)))
        servers.append(Served(FLOOR, stack.enter_context(start_echo("peers-floor")), both))
        print(f"bench-peers: {len(cells)} cells x {len(servers)} servers x {args.rounds} rounds", flush=True)
        measurements = run_rounds(servers, cells, spec, args.texts, args.rounds)
        memories = [memory(s) for s in servers]
    command = shlex.join([".venv/bin/python", "-m", "bench.peers", *args_list])
    report = markdown(
        command, spec, args.rounds, (load_before, os.getloadavg()), measurements, servers,
        servers[0].name, names, memories,
    )  # fmt: skip
    write_report(args.report, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
