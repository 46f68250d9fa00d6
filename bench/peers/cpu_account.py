"""Where a served request's CPU goes: seqserve's server CPU per request in one native cell, split into
the transport (the floor's CPU per request, same cell, protocol and round), the steps measured apart,
and the remainder.

Measured apart: tokenize and runtime (the CPU of the batches the server executed, in this process:
the same texts in batches of the server's mean batch size from its own histograms); decode and
admission, and encode (bench.request_path.request_steps, in this process); crossings (one hand-off to
an inference thread and back, in this process, per executed batch). The remainder is batching and
whatever else those do not hold: queueing, the batch's Python, metrics, and the GIL hand-offs and
thread wake-ups that appear only under concurrency. Beside them, the server's own tokenize and
inference histograms give the time those steps took on their threads, waits included."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

from bench.peers.model_cost import ServedBatch
from bench.peers.native import NativeMeasurement
from bench.peers.rounds import Cell
from bench.request_path import StepCosts


@dataclass(frozen=True)
class Account:
    """CPU ms per request of one cell (medians over rounds when from `median_account`)."""

    served_ms: float  # seqserve's server CPU per request, /proc
    transport_ms: float  # the floor's, /proc
    decode_ms: float  # decode and admission, in process
    model_ms: float  # tokenize and runtime of the executed batches, in process
    encode_ms: float  # in process
    crossings_ms: float  # one crossing per executed batch, in process, x the server's batches per request
    thread_ms: float  # tokenize and runtime as the server's histograms timed them (time, not CPU)
    mean_batch: float  # texts per executed batch, the server's histogram

    @property
    def remainder_ms(self) -> float:
        """Batching and the rest: what no step measured apart holds."""
        measured = self.transport_ms + self.decode_ms + self.model_ms + self.encode_ms + self.crossings_ms
        return self.served_ms - measured


def executed_batch(m: NativeMeasurement) -> ServedBatch:
    """The batch the server executed on average in `m`: its model, texts per request, mean batch size."""
    mean = m.counts.mean_batch if m.counts and m.counts.batches else m.cell.batch
    return m.cell.model, m.cell.batch, max(1, round(mean))


def account(
    ours: NativeMeasurement, floor: NativeMeasurement, steps: StepCosts, batch_us: Mapping[ServedBatch, float]
) -> Account:
    """The account of one round of one cell; `ours` must carry the server's counts, and `batch_us` the
    CPU µs of its executed batch."""
    if ours.counts is None:
        raise ValueError(f"{ours.server} has no /metrics counts: no account")
    answered = ours.result.succeeded
    counts = ours.counts
    batch = executed_batch(ours)
    return Account(
        served_ms=ours.server_cpu_ms,
        transport_ms=floor.server_cpu_ms,
        decode_ms=steps.decode_us[ours.cell.batch] / 1e3,
        model_ms=batch_us[batch] / batch[2] * ours.cell.batch / 1e3,
        encode_ms=steps.encode_us[ours.cell.batch] / 1e3,
        crossings_ms=steps.crossing_us / 1e3 * counts.batches / answered,
        thread_ms=1e3 * counts.model_seconds / answered,
        mean_batch=counts.mean_batch,
    )


def median_account(accounts: Sequence[Account]) -> Account:
    return Account(
        **{f.name: statistics.median(getattr(a, f.name) for a in accounts) for f in fields(Account)}
    )


def accounted(
    measurements: Sequence[NativeMeasurement], subject: str, reference: str, protocol: str
) -> list[tuple[NativeMeasurement, NativeMeasurement]]:
    """Each measurement of `subject` over `protocol` with the server's counts, beside `reference`'s (the
    floor) in the same cell and round."""
    by_key = {(m.server, m.protocol, m.cell, m.round): m for m in measurements}
    return [
        (ours, floor)
        for (server, proto, cell, round_), ours in by_key.items()
        if (server, proto) == (subject, protocol)
        and ours.counts is not None
        and ours.result.succeeded
        and (floor := by_key.get((reference, protocol, cell, round_))) is not None
    ]


def accounts(
    pairs: Sequence[tuple[NativeMeasurement, NativeMeasurement]],
    steps: Mapping[str, StepCosts],
    batch_us: Mapping[ServedBatch, float],
) -> dict[Cell, Account]:
    """Per cell, the median over rounds of the per-round accounts (`accounted` pairs); a cell without
    step costs or batch costs is left out."""
    per_cell: dict[Cell, list[Account]] = {}
    for ours, floor in pairs:
        model_steps = steps.get(ours.cell.model)
        if model_steps is None or ours.cell.batch not in model_steps.decode_us:
            continue
        if executed_batch(ours) not in batch_us:
            continue
        per_cell.setdefault(ours.cell, []).append(account(ours, floor, model_steps, batch_us))
    return {cell: median_account(rows) for cell, rows in per_cell.items()}


ACCOUNT_HEADER = [
    "| cell | served CPU/req | transport (floor) | decode and admission | tokenize and runtime | encode "
    "| crossings | batching and the rest | tokenize and runtime, thread time | mean batch (texts) |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]


def account_rows(accounts_: Mapping[Cell, Account]) -> list[str]:
    """The account as table rows, ms per request (each part also as % of the served CPU)."""
    rows = list(ACCOUNT_HEADER)
    for cell, a in accounts_.items():
        parts = (a.transport_ms, a.decode_ms, a.model_ms, a.encode_ms, a.crossings_ms, a.remainder_ms)
        shown = " | ".join(f"{part:.3f} ({100 * part / a.served_ms:.0f} %)" for part in parts)
        thread = f"{a.thread_ms:.3f} | {a.mean_batch:.1f}"
        rows.append(f"| {cell.label} | {a.served_ms:.3f} | {shown} | {thread} |")
    return rows
