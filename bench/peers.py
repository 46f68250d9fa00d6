"""seqserve against the peer a user would pick instead, KServe's Python ModelServer, and against the
no-op floor, same client, one run.

Every server serves the same ONNX files with the same tokenizer.json (a scratch repository holding only
the chosen models; the peer gets a manifest of the same files, bench/kserve_peer.py, run from its own
virtualenv because kserve and tritonclient cannot share a process). KServe runs twice: padding every
text to max_length (as its tokenizer.json pads), and padding each request only to its longest text +
the model's `sequence.trailing_padding` (`--trim N`, one process per N), as a user of a variable-length
graph could write it. This process is the load generator and never imports kserve: every server gets
the same tritonclient.grpc.aio ModelInfer client (seqserve loadtest's V2 target), and seqserve's own
API and the floor's get `seqserve loadtest`'s Classify client. The floor is bench/echo_server.py, a
no-op on the same grpc.aio stack. seqserve is also measured through TensorFlow Serving's Predict
(`seqserve loadtest --protocol tfs`, TF Serving's stubs), judged against its own V2 ModelInfer on the
same model in the same rounds.

Before any measurement every server but the floor must answer the same probabilities (within 1e-5) to
the same real texts over V2 ModelInfer; one that differs fails the run. Per round, each cell (model,
concurrency, texts per request) measures every server in turn, the order rotated from round to round;
each measurement is a warm-up, then a measured phase with the servers' CPU time read from /proc around
it (every process of a server: `--workers` ones have several). The targets are judged against the
floor (and KServe) measured in the same round, on servers of the same number of processes, by the
range of the per-round figures (PASS only when the whole range clears the target). RSS per process is
read after the last round.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import TypeVar

import numpy as np

from bench.harness import LOG_DIR, REPO_ROOT, ServerProcess, free_port, start_echo, start_seqserve
from bench.in_process import InProcessModel, load_in_process
from bench.inference_timing import TimingBudget, interleaved_timings
from bench.machine import cpu_model, loads_text, now_text, write_report
from bench.models import ModelFiles, copy_tokenizer, find_models
from bench.targets import TargetResult
from seqserve.loadtest.cli import DEFAULT_TEXTS
from seqserve.loadtest.report import Summary, summarize
from seqserve.loadtest.runner import LoadSpec, run_model
from seqserve.loadtest.targets import create_target
from seqserve.loadtest.texts import TextCycle, load_texts
from seqserve.v1 import model_config_pb2
from seqserve.verdicts import Judgement

REPORT = Path("reports/peers.md")
KSERVE_PEER = REPO_ROOT / "bench" / "kserve_peer.py"
KSERVE_REQUIREMENTS = REPO_ROOT / "bench" / "kserve_peer_requirements.txt"
KSERVE = "KServe"
KSERVE_TRIMMED = "KServe, padded to the longest text"
FLOOR = "no-op floor"
BASELINE = "seqserve baseline"
# the protocols compared (seqserve loadtest's --protocol) and the names the report gives them; a server
# speaks some of them (Served.protocols)
PROTOCOLS = {"v2": "V2 ModelInfer", "tfs": "TF Serving Predict", "seqserve": "Classify"}
# what every server of the run speaks (the floor and a baseline tree may predate TF Serving's API)
COMMON_PROTOCOLS = ("v2", "seqserve")
PARITY_PROTOCOL = "v2"
PARITY_TEXTS = 48
PARITY_TOLERANCE = 1e-5
IN_PROCESS_BATCHES = (1, 32)
IN_PROCESS_CHUNKS = 8  # one timed call runs this many different batches of real texts
WHOLE_OVER_WORKER_RSS = 2.2  # --workers 2: the whole server's RSS against one worker's
T = TypeVar("T")


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
    protocols: tuple[str, ...]  # keys of PROTOCOLS it speaks
    processes: int  # what it runs on: only servers of the same count are compared in a target
    padding: str  # how it pads a request's ids, for the report
    models: frozenset[str] | None = None  # None: every model of the run
    parity: bool = True  # False: it answers constants (the floor), not the models' probabilities

    def serves(self, model: str) -> bool:
        return self.models is None or model in self.models


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


# a figure of one measurement, by the name the targets and the tables use
METRICS: dict[str, Callable[[Measurement], float]] = {
    "requests_per_s": lambda m: m.summary.requests_per_s,
    "texts_per_s": lambda m: m.summary.texts_per_s,
    "p50_ms": lambda m: m.summary.latency_ms["p50"],
    "p99_ms": lambda m: m.summary.latency_ms["p99"],
    "server_cpu_ms": lambda m: m.server_cpu_ms_per_request,
    "client_cpu_percent": lambda m: m.summary.client_cpu_percent,
}


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
    medians_ = {name: statistics.median(map(value, measurements)) for name, value in METRICS.items()}
    return Figures(**medians_, errors=sum(sum(m.summary.errors.values()) for m in measurements))


FigureKey = tuple[str, str, Cell]  # server, protocol, cell


def medians(measurements: Sequence[Measurement]) -> dict[FigureKey, Figures]:
    groups: dict[FigureKey, list[Measurement]] = {}
    for m in measurements:
        groups.setdefault((m.server, m.protocol, m.cell), []).append(m)
    return {key: median_figures(group) for key, group in groups.items()}


@dataclass(frozen=True)
class Target:
    """A figure of seqserve in one cell shape against a reference server's in the same cell, protocol and
    round: their ratio (`relation` "ratio") or difference ("excess") at least (or at most) `limit`."""

    name: str
    shape: tuple[int, int]  # concurrency, texts per request
    metric: str  # a key of METRICS
    reference: str  # FLOOR or a KServe form
    relation: str  # "ratio" or "excess"
    limit: float
    higher_is_better: bool
    unit: str
    architectures: frozenset[str] | None = None  # the models' config `architecture`; None: every model
    protocols: tuple[str, ...] = tuple(PROTOCOLS)

    def compare(self, ours: float, reference: float) -> float:
        return ours / reference if self.relation == "ratio" else ours - reference

    @property
    def bound(self) -> str:
        sign = "≥" if self.higher_is_better else "≤"
        if self.relation == "excess":
            return f"{sign} {self.reference} + {self.limit:g} {self.unit}"
        if self.limit < 1:
            return f"{sign} {100 * self.limit:g} % of the {self.reference}'s"
        return f"{sign} {self.limit:g}x {self.reference}"


TEXTS_AT_C8 = "texts/s at c=8, 32 texts/request"
TARGETS = (
    Target("c=1 p50", (1, 1), "p50_ms", FLOOR, "excess", 0.12, False, "ms"),
    Target("c=32 req/s", (32, 1), "requests_per_s", FLOOR, "ratio", 0.85, True, "req/s"),
    Target("server CPU per request at c=32", (32, 1), "server_cpu_ms", FLOOR, "excess", 0.08, False, "ms"),
    Target(TEXTS_AT_C8, (8, 32), "texts_per_s", FLOOR, "ratio", 0.40, True, "texts/s", frozenset({"conv"})),
    Target(
        TEXTS_AT_C8, (8, 32), "texts_per_s", KSERVE_TRIMMED, "ratio", 2.5, True, "texts/s",
        frozenset({"conv"}), ("v2",),
    ),
    Target(
        TEXTS_AT_C8, (8, 32), "texts_per_s", KSERVE_TRIMMED, "ratio", 2.0, True, "texts/s",
        frozenset({"lstm"}), ("v2",),
    ),
)  # fmt: skip


# TF Serving's Predict against V2 ModelInfer on the same seqserve server, cell and round: the same request
# path behind both, so within 10 % either way.
V2_INFER = PROTOCOLS["v2"]
PREDICT_TARGETS = (
    Target("c=1 p50", (1, 1), "p50_ms", V2_INFER, "ratio", 1.1, False, "ms", protocols=("tfs",)),
    Target(
        "c=32 req/s", (32, 1), "requests_per_s", V2_INFER, "ratio", 0.9, True, "req/s", protocols=("tfs",)
    ),
    Target(
        "server CPU per request at c=32", (32, 1), "server_cpu_ms", V2_INFER, "ratio", 1.1, False, "ms",
        protocols=("tfs",),
    ),
)  # fmt: skip


def margin(values: Sequence[float], limit: float, higher_is_better: bool) -> Judgement:
    """SUPPORTS when the whole range of the per-round values clears `limit`, CONTRADICTS when the whole
    range is on the wrong side, UNCLEAR when it straddles the limit."""
    low, high = min(values), max(values)
    good, bad = (low >= limit, high < limit) if higher_is_better else (high <= limit, low > limit)
    if good:
        return Judgement.SUPPORTS
    return Judgement.CONTRADICTS if bad else Judgement.UNCLEAR


def per_round(
    measurements: Sequence[Measurement], server: str, protocol: str, cell: Cell
) -> dict[int, Measurement]:
    return {m.round: m for m in measurements if (m.server, m.protocol, m.cell) == (server, protocol, cell)}


@dataclass(frozen=True)
class InProcessCost:
    """The model's own compute, as the server runs it (tokenize + runtime), in this process: CPU µs per
    text at each batch size of IN_PROCESS_BATCHES, median of interleaved samples."""

    model: str
    cpu_us_per_text: dict[int, float]

    def line(self, batch: int) -> str:
        us = self.cpu_us_per_text[batch]
        return (
            f"in process (tokenize + runtime, batch {batch}): {us:.0f} µs of CPU per text, at most "
            f"{1e6 / us:.0f} texts/s per CPU"
        )


def in_process_costs(
    models: Sequence[ModelFiles], repository: Path, texts: Sequence[str]
) -> list[InProcessCost]:
    """Each model's tokenize + runtime per text at batch 1 and 32 of real texts."""
    loaded = {m.name: load_in_process(m.version_dir, m.config, repository) for m in models}
    batches = {
        b: [list(texts[i * b : (i + 1) * b]) for i in range(IN_PROCESS_CHUNKS)] for b in IN_PROCESS_BATCHES
    }

    def run(model: InProcessModel, batch: int) -> None:
        for chunk in batches[batch]:
            model.predict(chunk)

    subjects = {
        (name, b): partial(run, model, b) for name, model in loaded.items() for b in IN_PROCESS_BATCHES
    }
    samples = interleaved_timings(
        {f"{name} {b}": call for (name, b), call in subjects.items()},
        TimingBudget(min_rounds=5, seconds_per_subject=0.3),
    )
    return [
        InProcessCost(
            name,
            {
                b: 1e6 * statistics.median(samples.cpu[f"{name} {b}"]) / (IN_PROCESS_CHUNKS * b)
                for b in IN_PROCESS_BATCHES
            },
        )
        for name in loaded
    ]


def judge(
    target: Target, label: str, ours: Mapping[int, Measurement], theirs: Mapping[int, Measurement], cost: str
) -> TargetResult | None:
    """One target from the rounds both servers were measured in (None: no such round), by `margin`."""
    rounds = sorted(ours.keys() & theirs.keys())
    if not rounds:
        return None
    value = METRICS[target.metric]
    compared = [target.compare(value(ours[r]), value(theirs[r])) for r in rounds]
    judgement = margin(compared, target.limit, target.higher_is_better)
    kind, shown = ("ratio", "x") if target.relation == "ratio" else ("difference", f" {target.unit}")
    mid_ours = statistics.median(value(ours[r]) for r in rounds)
    mid_theirs = statistics.median(value(theirs[r]) for r in rounds)
    evidence = (
        f"{kind} per round {min(compared):.3g}..{max(compared):.3g}{shown} over {len(rounds)} round(s) "
        f"(medians {mid_ours:.4g} vs {mid_theirs:.4g} {target.unit})" + (f"; {cost}" if cost else "")
    )
    return TargetResult(
        label, judgement == Judgement.SUPPORTS, evidence, unclear=judgement == Judgement.UNCLEAR
    )


def verdicts(
    measurements: Sequence[Measurement],
    servers: Sequence[Served],
    architectures: Mapping[str, str],
    subject: str,
    costs: Mapping[str, InProcessCost] | None = None,
) -> list[TargetResult]:
    """Each target per model and protocol: `subject` (a seqserve server) against the reference server in
    the same cell, protocol and round, judged by the range of the per-round comparisons. A reference of
    another process count than the subject's is no comparison: its targets are left out."""
    processes = next(s.processes for s in servers if s.name == subject)
    results = []
    for model, architecture in architectures.items():
        for target in TARGETS:
            if target.architectures is not None and architecture not in target.architectures:
                continue
            reference = next((s for s in servers if s.name == target.reference and s.serves(model)), None)
            if reference is None or reference.processes != processes:
                continue
            cell = Cell(model, *target.shape)
            cost = costs[model].line(cell.batch) if costs and model in costs else ""
            for protocol in target.protocols:
                result = judge(
                    target,
                    f"{model}, {PROTOCOLS[protocol]}: {target.name} {target.bound}",
                    per_round(measurements, subject, protocol, cell),
                    per_round(measurements, reference.name, protocol, cell),
                    cost,
                )
                if result is not None:  # None: a cell `--cells` left out, a protocol it does not speak
                    results.append(result)
    return results


def predict_verdicts(
    measurements: Sequence[Measurement], models: Sequence[str], subject: str
) -> list[TargetResult]:
    """TF Serving's Predict against V2 ModelInfer on `subject`, per model, cell and round."""
    results = []
    for model in models:
        for target in PREDICT_TARGETS:
            cell = Cell(model, *target.shape)
            result = judge(
                target,
                f"{model}, {PROTOCOLS['tfs']}: {target.name} {target.bound}",
                per_round(measurements, subject, "tfs", cell),
                per_round(measurements, subject, "v2", cell),
                "",
            )
            if result is not None:
                results.append(result)
    return results


class ParityError(Exception):
    """A server answers other probabilities than the reference server to the same texts."""


def check_parity(answers: Mapping[str, np.ndarray], reference: str, model: str) -> float:
    """The largest difference from `reference`'s answers; raises ParityError naming every server that
    differs by more than PARITY_TOLERANCE (or answers another shape)."""
    expected = answers[reference]
    worst, differing = 0.0, []
    for name, got in answers.items():
        if got.shape != expected.shape:
            differing.append(f"{name} answered shape {got.shape}, {reference} {expected.shape}")
            continue
        difference = float(np.abs(got - expected).max()) if got.size else 0.0
        worst = max(worst, difference)
        if not difference <= PARITY_TOLERANCE:
            differing.append(f"{name} differs from {reference} by up to {difference:.2e}")
    if differing:
        raise ParityError(
            f"{model}: not the same probabilities to the same {len(expected)} texts (tolerance "
            f"{PARITY_TOLERANCE:g}): {'; '.join(differing)}. The comparison would not be of the same "
            "work; fix the server (or its padding) before measuring."
        )
    return worst


def v2_probabilities(address: str, model: str, texts: Sequence[str]) -> np.ndarray:
    """The `probabilities` a server answers over V2 ModelInfer to one request of `texts`."""
    import tritonclient.grpc as triton

    client = triton.InferenceServerClient(address)
    try:
        text = triton.InferInput("text", [len(texts)], "BYTES")
        text.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=object))
        return np.asarray(client.infer(model, [text], client_timeout=60).as_numpy("probabilities"))
    finally:
        client.close()


def served_parity(servers: Sequence[Served], models: Sequence[str], texts: Sequence[str]) -> dict[str, float]:
    """model -> the largest difference between the servers that answer the models' probabilities;
    raises ParityError on the first model where one differs, or for a server it cannot ask (one that
    does not speak V2 ModelInfer is never measured unchecked)."""
    unchecked = [s.name for s in servers if s.parity and PARITY_PROTOCOL not in s.protocols]
    if unchecked:
        raise ParityError(
            f"{', '.join(unchecked)} speak(s) no {PROTOCOLS[PARITY_PROTOCOL]}: their answers cannot be "
            "compared; give bench.peers.served_parity a client for their protocol"
        )
    worst = {}
    for model in models:
        answering = [s for s in servers if s.parity and s.serves(model)]
        answers = {s.name: v2_probabilities(s.server.address, model, texts) for s in answering}
        worst[model] = check_parity(answers, answering[0].name, model)
    return worst


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


def trims(models: Sequence[ModelFiles]) -> dict[int, list[str]]:
    """The KServe peer's `--trim N` for each variable-length model (N = its `sequence.trailing_padding`),
    as N -> models: one peer process per N. Fixed-length graphs cannot be cut: none for them."""
    by_trim: dict[int, list[str]] = {}
    for model in models:
        if model.config.sequence.variable_length:
            by_trim.setdefault(model.config.sequence.trailing_padding, []).append(model.name)
    return by_trim


def start_kserve(python: str, manifest: list[dict], scratch: Path, *extra: str) -> ServerProcess:
    """The KServe peer serving the models of `manifest` (written into `scratch`), ready once every one
    answers ModelReady (it prints no ready line)."""
    import tritonclient.grpc as triton  # the sync client, for the readiness poll only

    port = free_port()
    address = f"127.0.0.1:{port}"
    models = [entry["name"] for entry in manifest]
    manifest_path = scratch / f"kserve-peer-{port}.json"
    manifest_path.write_text(json.dumps(manifest))

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

    command = [python, str(KSERVE_PEER), "--manifest", str(manifest_path), *extra]
    command += ["--grpc_port", str(port), "--http_port", str(free_port())]
    return ServerProcess(command, LOG_DIR / f"bench-peers-kserve-{port}.log", probe=every_model_ready)


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


def rotated(items: Sequence[T], round_: int) -> list[T]:
    """`items` in the order of round `round_`: each round starts one further along."""
    shift = round_ % len(items) if items else 0
    return [*items[shift:], *items[:shift]]


def measured_pairs(servers: Sequence[Served], cell: Cell) -> list[tuple[Served, str]]:
    """Every (server, protocol) of a cell, in the report's order: protocol by protocol."""
    return [(s, p) for p in PROTOCOLS for s in servers if p in s.protocols and s.serves(cell.model)]


def run_rounds(
    servers: Sequence[Served], cells: Sequence[Cell], spec: LoadSpec, texts_path: Path, rounds: int
) -> list[Measurement]:
    """Every cell on every server and protocol, `rounds` times, server order rotated each round."""
    corpus = load_texts(texts_path)
    results = []
    for round_ in range(rounds):
        for cell in cells:
            texts = TextCycle(corpus, cell.batch)
            for served, protocol in rotated(measured_pairs(servers, cell), round_):
                m = asyncio.run(measure_one(served, protocol, cell, spec, texts, round_))
                s = m.summary
                print(
                    f"  round {round_ + 1} {cell.label:<40} {served.name:<34} {protocol:<8} "
                    f"{s.requests_per_s:8.0f} req/s  p50 {s.latency_ms['p50']:6.2f} ms  "
                    f"p99 {s.latency_ms['p99']:6.2f} ms  server CPU {m.server_cpu_ms_per_request:.3f} ms/req",
                    flush=True,
                )
                results.append(m)
    return results


def ratio_rows(
    figures: Mapping[FigureKey, Figures], cells: Sequence[Cell], subject: str, others: Sequence[str]
) -> list[str]:
    """`subject`'s figures over each of `others`' (V2 ModelInfer, the one protocol all speak), cell by
    cell: the ratios of the medians."""
    rows = [
        "| cell | over | req/s | texts/s | p50 | p99 | server CPU per request |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for cell in cells:
        for other in others:
            ours, theirs = figures.get((subject, "v2", cell)), figures.get((other, "v2", cell))
            if ours is None or theirs is None:
                continue
            rows.append(
                f"| {cell.label} | {other} | {ours.requests_per_s / theirs.requests_per_s:.2f} "
                f"| {ours.texts_per_s / theirs.texts_per_s:.2f} | {ours.p50_ms / theirs.p50_ms:.2f} "
                f"| {ours.p99_ms / theirs.p99_ms:.2f} | {ours.server_cpu_ms / theirs.server_cpu_ms:.2f} |"
            )
    return rows


def ab_table(figures: Mapping[FigureKey, Figures], cells: Sequence[Cell], seqserve: str) -> list[str]:
    """This tree's server over the baseline's, cell by cell and protocol by protocol."""
    rows = [
        "",
        f"## {seqserve} against the baseline tree (this / baseline)",
        "",
        "| cell | protocol | server CPU per request | p50 | p99 | req/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for cell in cells:
        for protocol in PROTOCOLS:
            ours, base = figures.get((seqserve, protocol, cell)), figures.get((BASELINE, protocol, cell))
            if ours is None or base is None:
                continue
            rows.append(
                f"| {cell.label} | {PROTOCOLS[protocol]} | {ours.server_cpu_ms / base.server_cpu_ms:.3f} "
                f"| {ours.p50_ms / base.p50_ms:.3f} | {ours.p99_ms / base.p99_ms:.3f} "
                f"| {ours.requests_per_s / base.requests_per_s:.3f} |"
            )
    return rows


@dataclass(frozen=True)
class Memory:
    server: str
    rss_mib: list[float]  # each process: the first is the one started, then its workers


def memory(served: Served) -> Memory:
    label = served.name if served.models is None else f"{served.name} ({', '.join(sorted(served.models))})"
    return Memory(label, [rss / 2**20 for rss in served.server.rss_bytes()])


def peer_versions() -> str:
    pins = dict(line.split("==", 1) for line in KSERVE_REQUIREMENTS.read_text().splitlines() if "==" in line)
    return ", ".join(f"{name} {pins[name]}" for name in ("kserve", "grpcio", "onnxruntime", "tokenizers"))


@dataclass(frozen=True)
class Run:
    """What one run measured, for the report."""

    command: str
    spec: LoadSpec
    rounds: int
    load: tuple[tuple[float, ...], tuple[float, ...]]
    measurements: Sequence[Measurement]
    servers: Sequence[Served]
    architectures: Mapping[str, str]  # model -> its config's architecture
    parity: Mapping[str, float]  # model -> the largest difference between the servers' answers
    costs: Sequence[InProcessCost]
    memories: Sequence[Memory]


def servers_table(servers: Sequence[Served]) -> list[str]:
    rows = ["| server | processes | protocols | pads each request's ids | models |", "|---|---:|---|---|---|"]
    for s in servers:
        protocols = ", ".join(PROTOCOLS[p] for p in s.protocols)
        models = "all" if s.models is None else ", ".join(sorted(s.models))
        rows.append(f"| {s.name} | {s.processes} | {protocols} | {s.padding} | {models} |")
    return rows


def markdown(run: Run) -> str:
    figures = medians(run.measurements)
    cells = list(dict.fromkeys(m.cell for m in run.measurements))
    spec = run.spec
    lines = [
        "# seqserve against the no-op floor and KServe's Python ModelServer, same client, same run",
        "",
        f"- command: `{run.command}`",
        f"- date: {now_text()}; machine: {cpu_model()}, {os.cpu_count()} logical "
        "CPUs shared by the servers and the load generator; load average (1, 5, 15 min) at start "
        f"{loads_text(run.load[0])}, at end {loads_text(run.load[1])}",
        f"- seqserve: grpcio {metadata.version('grpcio')}, onnxruntime {metadata.version('onnxruntime')}; "
        f"peer: {peer_versions()} (bench/kserve_peer.py); client: tritonclient "
        f"{metadata.version('tritonclient')} grpc.aio ModelInfer for V2, `seqserve loadtest` for seqserve.v1 "
        "Classify and for TF Serving Predict (TF Serving's stubs on grpc.aio)",
        f"- {run.rounds} interleaved rounds (server order rotated each round), each measurement "
        f"{spec.warmup_s:g} s warm-up + {spec.duration_s:g} s measured, {spec.channels} channel(s), closed "
        "loop; figures are medians over rounds; server CPU is every process of the server during the "
        "measured phase, from /proc, per successful request",
        f"- parity before measuring: every server but the floor answered the same probabilities to the same "
        f"{PARITY_TEXTS} headlines (V2 ModelInfer, one request), largest difference "
        + ", ".join(f"{model} {worst:.1e}" for model, worst in run.parity.items())
        + f" (tolerance {PARITY_TOLERANCE:g})",
        "",
        "## Servers",
        "",
        *servers_table(run.servers),
        "",
        "## Figures",
        "",
        "| cell | server | protocol | req/s | texts/s | p50 ms | p99 ms | server CPU ms/req | client CPU "
        "| errors |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cell in cells:
        for served, protocol in measured_pairs(run.servers, cell):
            f = figures.get((served.name, protocol, cell))
            if f is None:
                continue
            lines.append(
                f"| {cell.label} | {served.name} | {PROTOCOLS[protocol]} "
                f"| {f.requests_per_s:.0f} | {f.texts_per_s:.0f} | {f.p50_ms:.2f} | {f.p99_ms:.2f} "
                f"| {f.server_cpu_ms:.3f} | {f.client_cpu_percent:.0f}% | {f.errors} |"
            )
    names = {s.name for s in run.servers}
    costs = {c.model: c for c in run.costs}
    for subject in (s for s in run.servers if s.name.startswith("seqserve N=")):
        results = verdicts(run.measurements, run.servers, run.architectures, subject.name, costs)
        if not results:
            lines += [
                "",
                f"- {subject.name} runs {subject.processes} processes and no reference here does: its row is "
                "reported as it is, in no target",
            ]
            continue
        lines += [
            "",
            f"## Targets: {subject.name} against the servers of {subject.processes} process(es) measured in "
            "the same rounds",
            "",
            "Each target is judged on the per-round comparison (the two servers measured back to back in "
            "the round): **PASS** when its whole range over the rounds clears the target, **FAIL** when the "
            "whole range is on the wrong side, **unclear** when the range straddles the target (no "
            "evidence either way). The in-process cost of the model (the same tokenizer and runtime as "
            "the server, this process) is beside each: what the model's compute alone allows.",
            "",
            *(v.line() for v in results),
        ]
    for subject in (s for s in run.servers if "tfs" in s.protocols):
        predict = predict_verdicts(run.measurements, list(run.architectures), subject.name)
        if predict:
            lines += [
                "",
                f"## Targets: {subject.name}, TF Serving Predict against V2 ModelInfer on the same model",
                "",
                *(v.line() for v in predict),
            ]
    kserve_forms = [n for n in (KSERVE, KSERVE_TRIMMED) if n in names]
    if kserve_forms:
        subject = run.servers[0].name
        lines += ["", f"## {subject} over KServe (V2 ModelInfer, ratios of the medians)", ""]
        lines += ratio_rows(figures, cells, subject, kserve_forms)
    if BASELINE in names:
        lines += ab_table(figures, cells, run.servers[0].name)
    lines += [
        "",
        "## Memory after the run (RSS, MiB)",
        "",
        "| server | processes | RSS each | whole |",
        "|---|---:|---|---:|",
    ]
    for m in run.memories:
        each = ", ".join(f"{r:.0f}" for r in m.rss_mib)
        lines.append(f"| {m.server} | {len(m.rss_mib)} | {each} | {sum(m.rss_mib):.0f} |")
    lines += [
        "",
        *(worker_memory(m) for m in run.memories if len(m.rss_mib) > 1 and m.server.startswith("seqserve")),
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


SEQSERVE_PADDING = "to the batch's longest text + the model's `sequence.trailing_padding` (config.pbtxt)"


def start_servers(
    stack: contextlib.ExitStack,
    args: argparse.Namespace,
    scratch: Path,
    models: Sequence[ModelFiles],
) -> list[Served]:
    """Every server of the run, in the report's order; a new peer is one more entry here."""
    both = COMMON_PROTOCOLS
    repository = scratch / "models"
    manifest = scratch_repository(models, args.models, repository)
    servers = []
    for count in (int(n) for n in args.workers.split(",")):
        extra = ("--workers", str(count)) if count > 1 else ()
        server = stack.enter_context(start_seqserve(repository, "peers-seqserve", *extra))
        servers.append(Served(f"seqserve N={count}", server, tuple(PROTOCOLS), count, SEQSERVE_PADDING))
    if args.baseline is not None or args.baseline_args:
        tree = args.baseline.resolve() if args.baseline is not None else REPO_ROOT
        baseline = start_seqserve(repository, "peers-baseline", *shlex.split(args.baseline_args), cwd=tree)
        servers.append(Served(BASELINE, stack.enter_context(baseline), both, 1, SEQSERVE_PADDING))
    if args.kserve_python:
        peer = stack.enter_context(start_kserve(args.kserve_python, manifest, scratch))
        servers.append(
            Served(KSERVE, peer, ("v2",), 1, "every text to max_length (tokenizer.json's padding)")
        )
        for trim, trimmed in trims(models).items():
            entries = [entry for entry in manifest if entry["name"] in trimmed]
            peer = stack.enter_context(
                start_kserve(args.kserve_python, entries, scratch, "--trim", str(trim))
            )
            padding = f"to the request's longest text + {trim} (`kserve_peer.py --trim {trim}`)"
            servers.append(Served(KSERVE_TRIMMED, peer, ("v2",), 1, padding, frozenset(trimmed)))
    floor = stack.enter_context(start_echo("peers-floor"))
    servers.append(Served(FLOOR, floor, both, 1, "none: constant answers", parity=False))
    return servers


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
        help="the peer virtualenv's python ('' leaves KServe out) [%(default)s]",
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
    models = [found[n] for n in names]
    corpus = load_texts(args.texts)
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as scratch, contextlib.ExitStack() as stack:
        servers = start_servers(stack, args, Path(scratch), models)
        print("bench-peers: the models' in-process cost", flush=True)
        costs = in_process_costs(models, args.models, corpus)
        try:
            parity = served_parity(servers, names, corpus[:PARITY_TEXTS])
        except ParityError as error:
            print(f"bench-peers: {error}", file=sys.stderr)
            return 1
        print(
            f"bench-peers: same answers (largest difference {max(parity.values()):.1e}); {len(cells)} cells "
            f"x {len(servers)} servers x {args.rounds} rounds",
            flush=True,
        )
        measurements = run_rounds(servers, cells, spec, args.texts, args.rounds)
        memories = [memory(s) for s in servers]
    command = shlex.join([".venv/bin/python", "-m", "bench.peers", *args_list])
    architectures = {m.name: m.config.architecture for m in models}
    run = Run(
        command, spec, args.rounds, (load_before, os.getloadavg()), measurements, servers, architectures,
        parity, costs, memories,
    )  # fmt: skip
    write_report(args.report, markdown(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
