"""Where a served request's CPU goes: seqserve's server CPU per request in one native cell, split into
the transport (the floor's CPU per request, same cell, protocol and round), the steps measured apart
(tokenize and runtime from the server's own histograms over the same phase; decode and admission,
encode and the crossings to an inference thread from bench.request_path in this process), and the
remainder: batching and whatever else the steps measured apart do not hold (queueing, the batch's
Python, metrics, the GIL hand-offs and thread wake-ups that appear only under concurrency)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

from bench.peers.native import NativeMeasurement
from bench.peers.rounds import Cell
from bench.request_path import StepCosts


@dataclass(frozen=True)
class Account:
    """CPU ms per request of one cell (medians over rounds when from `median_account`)."""

    served_ms: float  # seqserve's server CPU per request, /proc
    transport_ms: float  # the floor's, /proc
    decode_ms: float  # decode and admission, in process
    model_ms: float  # tokenize and runtime, the server's histograms (time on the thread that ran them)
    encode_ms: float  # in process
    crossings_ms: float  # one crossing per executed batch, in process, x the server's batches per request
    mean_batch: float  # texts per executed batch, the server's histogram

    @property
    def remainder_ms(self) -> float:
        """Batching and the rest: what no step measured apart holds."""
        measured = self.transport_ms + self.decode_ms + self.model_ms + self.encode_ms + self.crossings_ms
        return self.served_ms - measured


def account(ours: NativeMeasurement, floor: NativeMeasurement, steps: StepCosts) -> Account:
    """The account of one round of one cell; `ours` must carry the server's counts."""
    if ours.counts is None:
        raise ValueError(f"{ours.server} has no /metrics counts: no account")
    answered = ours.result.succeeded
    counts = ours.counts
    batches_per_request = counts.batches / answered
    return Account(
        served_ms=ours.server_cpu_ms,
        transport_ms=floor.server_cpu_ms,
        decode_ms=steps.decode_us[ours.cell.batch] / 1e3,
        model_ms=1e3 * counts.model_seconds / answered,
        encode_ms=steps.encode_us[ours.cell.batch] / 1e3,
        crossings_ms=steps.crossing_us / 1e3 * batches_per_request,
        mean_batch=counts.mean_batch,
    )


def median_account(accounts: Sequence[Account]) -> Account:
    return Account(
        **{f.name: statistics.median(getattr(a, f.name) for a in accounts) for f in fields(Account)}
    )


def accounts(
    measurements: Sequence[NativeMeasurement],
    subject: str,
    reference: str,
    protocol: str,
    steps: Mapping[str, StepCosts],
) -> dict[Cell, Account]:
    """Per cell of `subject` over `protocol`, the median over rounds of its per-round account against
    `reference` (the floor) in the same round; cells without a floor or step costs are left out."""
    by_key = {(m.server, m.protocol, m.cell, m.round): m for m in measurements}
    per_cell: dict[Cell, list[Account]] = {}
    for (server, proto, cell, round_), ours in by_key.items():
        floor = by_key.get((reference, protocol, cell, round_))
        if (server, proto) != (subject, protocol) or floor is None or cell.model not in steps:
            continue
        if cell.batch not in steps[cell.model].decode_us or not ours.result.succeeded:
            continue
        per_cell.setdefault(cell, []).append(account(ours, floor, steps[cell.model]))
    return {cell: median_account(rows) for cell, rows in per_cell.items()}


ACCOUNT_HEADER = [
    "| cell | served CPU/req | transport (floor) | decode and admission | tokenize and runtime | encode "
    "| crossings | batching and the rest | mean batch (texts) |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
]


def account_rows(accounts_: Mapping[Cell, Account]) -> list[str]:
    """The account as table rows, ms per request (each part also as % of the served CPU)."""
    rows = list(ACCOUNT_HEADER)
    for cell, a in accounts_.items():
        parts = (a.transport_ms, a.decode_ms, a.model_ms, a.encode_ms, a.crossings_ms, a.remainder_ms)
        shown = " | ".join(f"{part:.3f} ({100 * part / a.served_ms:.0f} %)" for part in parts)
        rows.append(f"| {cell.label} | {a.served_ms:.3f} | {shown} | {a.mean_batch:.1f} |")
    return rows
