"""A run's figures: client-side throughput and latency percentiles, server-side stage quantiles, and
with several models, the models side by side: each one's own cost (the server's compute per text)
beside its end-to-end latency."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from seqserve.compute import times_fastest
from seqserve.loadtest.runner import ModelRun
from seqserve.loadtest.trace_report import STAGES, CallBreakdown

QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p99.9": 0.999}


@dataclass(frozen=True)
class Summary:
    model: str
    load: str
    sent: int
    ok: int
    errors: dict[str, int]
    wall_s: float
    requests_per_s: float
    texts_per_s: float
    latency_ms: dict[str, float]  # QUANTILES plus max and mean; NaN without a successful request
    send_rate_per_s: float  # open loop: requests actually sent per second, first to last send
    max_send_lag_ms: float
    client_cpu_percent: float  # of one core
    server_ms: dict[str, dict[str, float]]  # stage -> p50/p99/mean in ms, plus count
    server_mean_batch_size: float
    server_note: str
    server_compute_per_text_ms: float = math.nan  # the server's tokenize + runtime time per text
    slowest_calls: list[CallBreakdown] = field(default_factory=list)  # with tracing on

    def as_json(self) -> dict[str, Any]:
        return _finite(asdict(self))

    @property
    def errors_text(self) -> str:
        """Failed requests by gRPC status code, e.g. "UNAVAILABLE 3", or "none"."""
        return ", ".join(f"{code} {n}" for code, n in self.errors.items()) or "none"

    @property
    def server_request_p50_ms(self) -> float:
        """The server's own p50 request duration; NaN without a server-side view."""
        return self.server_ms.get("request", {}).get("p50", math.nan)


def summarize(run: ModelRun) -> Summary:
    outcome = run.outcome
    recorder = outcome.recorder
    latencies = np.asarray(recorder.latencies_s, dtype=np.float64) * 1e3
    if latencies.size:
        values = np.quantile(latencies, list(QUANTILES.values()))
        latency = dict(zip(QUANTILES, map(float, values), strict=True))
        latency |= {"max": float(latencies.max()), "mean": float(latencies.mean())}
    else:
        latency = dict.fromkeys([*QUANTILES, "max", "mean"], math.nan)
    send_span = recorder.last_send - recorder.first_send
    server_ms: dict[str, dict[str, float]] = {}
    mean_batch = compute_ms = math.nan
    if run.server is not None:
        for stage, figures in run.server.stages.items():
            server_ms[stage] = {
                "count": figures.count,
                "p50": figures.p50_s * 1e3,
                "p99": figures.p99_s * 1e3,
                "mean": figures.mean_s * 1e3,
            }
        mean_batch = run.server.mean_batch_size
        compute_ms = run.server.compute_per_text_s * 1e3
    return Summary(
        model=run.model,
        load=run.spec.describe(),
        sent=recorder.sent,
        ok=recorder.ok,
        errors=dict(sorted(recorder.errors.items())),
        wall_s=outcome.wall_s,
        requests_per_s=recorder.ok / outcome.wall_s if outcome.wall_s > 0 else math.nan,
        texts_per_s=recorder.texts_ok / outcome.wall_s if outcome.wall_s > 0 else math.nan,
        latency_ms=latency,
        send_rate_per_s=(recorder.sent - 1) / send_span if send_span > 0 else math.nan,
        max_send_lag_ms=recorder.max_send_lag_s * 1e3,
        client_cpu_percent=100 * outcome.cpu_s / outcome.wall_s if outcome.wall_s > 0 else math.nan,
        server_ms=server_ms,
        server_mean_batch_size=mean_batch,
        server_compute_per_text_ms=compute_ms,
        server_note=run.server_note,
    )


def _finite(value: Any) -> Any:
    """JSON has no NaN: missing figures become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _ms(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.2f}"


def format_table(summaries: Sequence[Summary]) -> str:
    """Client-side figures per model, then the server's own per-stage view next to them."""
    client = [
        ("model", "load", "sent", "ok", "req/s", "texts/s", *QUANTILES, "max", "errors", "client CPU"),
        *(
            (
                s.model, s.load, str(s.sent), str(s.ok), f"{s.requests_per_s:.1f}", f"{s.texts_per_s:.1f}",
                *(_ms(s.latency_ms[q]) for q in QUANTILES), _ms(s.latency_ms["max"]),
                s.errors_text,
                f"{s.client_cpu_percent:.0f}%",
            )
            for s in summaries
        ),
    ]  # fmt: skip
    lines = ["client side (latency in ms)", *table_lines(client)]
    server = [("model", "stage", "count", "p50", "p99", "mean", "mean batch")]
    notes = []
    for s in summaries:
        for stage, figures in s.server_ms.items():
            server.append(
                (
                    s.model, stage, f"{figures['count']:.0f}", _ms(figures["p50"]), _ms(figures["p99"]),
                    _ms(figures["mean"]), f"{s.server_mean_batch_size:.2f}",
                )
            )  # fmt: skip
        if s.server_note:
            notes.append(f"{s.model}: {s.server_note}")
    if len(server) > 1:
        lines += ["", "server side, from /metrics histogram deltas (ms; tokenize and inference per batch)"]
        lines += table_lines(server)
    lines += notes
    if len(summaries) > 1:
        lines += ["", *format_side_by_side(summaries)]
    for s in summaries:
        if s.slowest_calls:
            lines += ["", *format_breakdowns(s.model, s.slowest_calls)]
    return "\n".join(lines)


def format_side_by_side(summaries: Sequence[Summary]) -> list[str]:
    """Table lines, fastest first: each model's own cost (compute per text, from the server's /metrics
    deltas) and its ratio to the fastest model's, beside the end-to-end latency the client measured."""
    ranked = sorted(
        summaries, key=lambda s: (math.isnan(s.server_compute_per_text_ms), s.server_compute_per_text_ms)
    )
    ratios = times_fastest([s.server_compute_per_text_ms for s in ranked])
    rows = [("model", "compute per text (ms)", "x fastest", "end to end p50", "end to end p99")]
    for s, ratio in zip(ranked, ratios, strict=True):
        rows.append(
            (
                s.model,
                f"{s.server_compute_per_text_ms:.4f}" if math.isfinite(s.server_compute_per_text_ms) else "-",
                f"{ratio:.2f}" if math.isfinite(ratio) else "-",
                _ms(s.latency_ms["p50"]),
                _ms(s.latency_ms["p99"]),
            )
        )
    title = (
        "models side by side, fastest first (compute per text: the server's tokenize + runtime time per "
        "text, from /metrics; end to end: the client's latency in ms)"
    )
    return [title, *table_lines(rows)]


def table_lines(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def format_breakdowns(model: str, rows: Sequence[CallBreakdown]) -> list[str]:
    """Table lines: one call per row, the server's stages in ms (tokenize and runtime: its batch's)."""
    table = [("trace id", "client", *STAGES, "batch texts/requests", "server instance")]
    for row in rows:
        table.append(
            (
                row.trace_id,
                _ms(row.client_ms),
                *(_ms(row.stages_ms.get(stage, math.nan)) for stage in STAGES),
                f"{row.batch_size}/{row.batch_requests}" if row.batch_size else "-",
                row.server_instance or "-",
            )
        )
    if not any(row.stages_ms for row in rows):
        title = f"slowest sampled calls to {model} (ms; --trace-receiver adds the server's stages)"
        return [title, *table_lines([row[:2] for row in table])]
    return [f"slowest sampled calls to {model} (ms), from the server's spans", *table_lines(table)]
