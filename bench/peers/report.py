"""reports/peers.md: what one run measured, every row naming its client."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata

from bench.machine import cpu_model, loads_text, now_text
from bench.peers.cpu_account import account_rows, accounted, accounts
from bench.peers.model_cost import InProcessCost, ServedBatch
from bench.peers.native import RATE_PROBE_CALLS, WORKERS_SHAPE, NativeMeasurement, layout
from bench.peers.parity import PARITY_TEXTS, PARITY_TOLERANCE
from bench.peers.rounds import CLIENTS, Measurement
from bench.peers.servers import (
    BASELINE,
    FLOOR,
    KSERVE,
    KSERVE_TRIMMED,
    PROTOCOLS,
    SEQSERVE_PREFIX,
    Memory,
    Served,
    peer_versions,
)
from bench.peers.tables import (
    ab_table,
    client_line,
    measured_pairs_rows,
    medians,
    memory_rows,
    native_rows,
    ratio_rows,
    servers_table,
    texts_rows,
    worker_memory,
)
from bench.peers.verdicts import ONE_WORKER, native_verdicts, predict_verdicts, verdicts
from bench.request_path import StepCosts
from seqserve.loadtest.runner import LoadSpec

TEXTS_SHAPE = (8, 32)


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
    native: Sequence[NativeMeasurement] = ()
    steps: Mapping[str, StepCosts] = field(default_factory=dict)  # model -> its request steps in process
    batch_us: Mapping[ServedBatch, float] = field(default_factory=dict)  # executed batches' CPU in process


def markdown(run: Run) -> str:
    figures = medians(run.measurements)
    cells = list(dict.fromkeys(m.cell for m in run.measurements))
    spec = run.spec
    lines = [
        "# seqserve against the no-op floor and KServe's Python ModelServer, same clients, same run",
        "",
        f"- command: `{run.command}`",
        f"- date: {now_text()}; machine: {cpu_model()}, {os.cpu_count()} logical "
        "CPUs shared by the servers and the load generator; load average (1, 5, 15 min) at start "
        f"{loads_text(run.load[0])}, at end {loads_text(run.load[1])}",
        f"- seqserve: grpcio {metadata.version('grpcio')}, onnxruntime {metadata.version('onnxruntime')}; "
        f"peer: {peer_versions()} (bench/kserve_peer.py); clients: tritonclient "
        f"{metadata.version('tritonclient')} grpc.aio ModelInfer for V2, `seqserve loadtest` for seqserve.v1 "
        "Classify and for TF Serving Predict (TF Serving's stubs on grpc.aio), and h2load "
        "(bench/native_client.py) for all three",
        f"- {client_line()}",
        f"- {run.rounds} interleaved rounds (server order rotated each round), each measurement "
        f"{spec.warmup_s:g} s warm-up + {spec.duration_s:g} s measured; the Python clients over "
        f"{spec.channels} channel(s), closed loop; figures are medians over rounds; server CPU is every "
        "process of the server during the measured phase, from /proc, per successful request",
        f"- parity before measuring: every server but the floor answered the same probabilities to the same "
        f"{PARITY_TEXTS} headlines (V2 ModelInfer, one request), largest difference "
        + ", ".join(f"{model} {worst:.1e}" for model, worst in run.parity.items())
        + f" (tolerance {PARITY_TOLERANCE:g})",
        "",
        "## Servers",
        "",
        *servers_table(run.servers),
    ]
    if run.measurements:
        lines += ["", "## Figures with the Python clients", ""]
        lines += measured_pairs_rows(figures, cells, run.servers)
    lines += python_targets(run, figures, cells)
    if run.native:
        lines += native_sections(run)
    lines += ["", "## Memory after the run (RSS, MiB)", "", *memory_rows(run.memories), ""]
    lines += [worker_memory(m) for m in run.memories if len(m.rss_mib) > 1 and m.server.startswith("seq")]
    return "\n".join(lines) + "\n"


def python_targets(run: Run, figures: Mapping, cells: Sequence) -> list[str]:
    """The targets judged on the Python clients' rows, and the ratios over KServe and the baseline."""
    lines: list[str] = []
    if not run.measurements:
        return lines
    names = {s.name for s in run.servers}
    costs = {c.model: c for c in run.costs}
    for subject in (s for s in run.servers if s.name.startswith(SEQSERVE_PREFIX)):
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
            f"the same rounds ({CLIENTS['v2']}, seqserve loadtest)",
            "",
            "Each target is judged on the per-round comparison (the two servers measured back to back in "
            "the round): **PASS** when its whole range over the rounds clears the target, **FAIL** when the "
            "whole range is on the wrong side, **unclear** when the range straddles the target (no "
            "evidence either way). The in-process cost of the model (the same tokenizer and runtime as "
            "the server, this process) is beside each: what the model's compute alone allows.",
            "",
            *(v.line() for v in results),
        ]
    for subject in (s for s in run.servers if "tfs" in s.protocols and s.name != FLOOR):
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
        lines += ["", f"## {subject} over KServe ({CLIENTS['v2']}, V2 ModelInfer, ratios of the medians)", ""]
        lines += ratio_rows(figures, cells, subject, kserve_forms)
    if BASELINE in names:
        lines += ab_table(figures, cells, run.servers[0].name)
    return lines


def native_sections(run: Run) -> list[str]:
    """The native client's rows, its targets, the 32-text cells against the baseline and the in-process
    bound, and the per-request CPU account."""
    costs = {c.model: c for c in run.costs}
    layouts = ", ".join(
        f"c={c}: {layout(c)[0]} connection(s) x {layout(c)[1]} stream(s)"
        for c in sorted({m.cell.concurrency for m in run.native})
    )
    failing = [
        f"- **FAIL** {m.cell.label}, {m.server}, {PROTOCOLS[m.protocol]}, round {m.round + 1}: {'; '.join(p)}"
        for m in run.native
        if (p := m.problems())
    ]
    results = native_verdicts(run.native, list(run.architectures), costs)
    lines = [
        "",
        "## Figures with the native client (h2load)",
        "",
        f"h2load (nghttp2-client) sends one pre-encoded gRPC frame per call (the first headlines of the "
        f"texts file), one thread; {layouts}. Each measurement: {RATE_PROBE_CALLS} calls per stream to find "
        f"the rate, a warm-up of about {run.spec.warmup_s:g} s, then as many calls as the warm-up's rate "
        f"makes {run.spec.duration_s:g} s, every call answered (none cut off in flight); server CPU from "
        "/proc around the measured calls, per call. gRPC statuses: h2load counts HTTP statuses only, so "
        "they are seqserve's own `seqserve_requests_total` by code, read before and after each measured "
        "phase; any non-OK status, or a call not counted OK, fails the cell and the run. The floor has no "
        "counter: it answers OK by construction (bench/echo_server.py never fails a call); the lean design "
        "(bench/lean_server.py, `--lean`: V2 only, seqserve's batching and runtime without its guarantees) "
        "counts its calls under the same name. Ratios against "
        "the floor are per round (same cell and protocol, measured in the same round), then the median. "
        f"{ONE_WORKER} and the floor run one process; {WORKERS_SHAPE[0]} calls in flight of one text are "
        "also sent to the server of two workers over V2 ModelInfer.",
        "",
        *native_rows(run.native),
        "",
        *(failing or ["- every cell: every call answered, every gRPC status OK"]),
    ]
    if results:
        lines += [
            "",
            "## Targets with the native client (h2load, V2 ModelInfer)",
            "",
            "Judged per round as the targets above; the baseline tree's target needs `--baseline DIR`.",
            "",
            *(v.line() for v in results),
        ]
    if any(m.cell.shape == TEXTS_SHAPE for m in run.native):
        lines += [
            "",
            f"## {TEXTS_SHAPE[1]} texts per request at c={TEXTS_SHAPE[0]} (h2load): against the baseline "
            "tree and the in-process bound",
            "",
            *texts_rows(run.native, costs, TEXTS_SHAPE),
        ]
    account = accounts(accounted(run.native, ONE_WORKER, FLOOR, "v2"), run.steps, run.batch_us)
    if account:
        lines += [
            "",
            f"## Where {ONE_WORKER}'s CPU per request goes (h2load, V2 ModelInfer)",
            "",
            "CPU ms per request, medians over rounds of each round's account. **Measured**: the served CPU "
            "and the transport (the floor's CPU per request in the same round, /proc); tokenize and "
            "runtime (the CPU of the batches the server executed: the cell's texts in batches of its mean "
            "batch size from `seqserve_batch_size`, timed in this process with the server's tokenizer and "
            "runtime); decode and admission (the V2 message into texts, model lookup, limits) and encode "
            "(the answer into its message), timed in this process on a request of the cell's texts; "
            "crossings (one hand-off to an inference thread and back, timed in this process, times the "
            "executed batches per request from the server's histograms: an upper bound, as a batch run "
            "inline crosses none). **Remainder**: batching and the rest, the served CPU less all of the "
            "above: queueing and batch formation, the batch's Python, metrics, and the GIL hand-offs and "
            "thread wake-ups that come with concurrency. Beside it, the time the server's own "
            "`seqserve_tokenize_duration_seconds` and `seqserve_inference_duration_seconds` recorded per "
            "request over the same phase: time on the threads that ran those steps, waits for the GIL or "
            "a core included, so above their CPU on a busy server.",
            "",
            *account_rows(account),
        ]
    return lines
