"""The report's tables: medians over rounds, seqserve over KServe and over the baseline tree, the
servers, memory, and the native client's figures against the floor of the same round."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from bench.native_client import CLIENT as NATIVE_CLIENT
from bench.peers.model_cost import InProcessCost
from bench.peers.native import NativeMeasurement, layout
from bench.peers.rounds import CLIENTS, METRICS, Cell, Measurement, measured_pairs
from bench.peers.servers import BASELINE, FLOOR, PROTOCOLS, Memory, Served
from bench.peers.verdicts import ONE_WORKER, per_round_values

WHOLE_OVER_WORKER_RSS = 2.2  # --workers 2: the whole server's RSS against one worker's


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


def measured_pairs_rows(
    figures: Mapping[FigureKey, Figures], cells: Sequence[Cell], servers: Sequence[Served]
) -> list[str]:
    """Every server's medians, cell by cell, protocol by protocol, with the client that measured them."""
    rows = [
        "| cell | server | protocol | client | req/s | texts/s | p50 ms | p99 ms | server CPU ms/req "
        "| client CPU | errors |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cell in cells:
        for served, protocol in measured_pairs(servers, cell):
            f = figures.get((served.name, protocol, cell))
            if f is None:
                continue
            rows.append(
                f"| {cell.label} | {served.name} | {PROTOCOLS[protocol]} | {CLIENTS[protocol]} "
                f"| {f.requests_per_s:.0f} | {f.texts_per_s:.0f} | {f.p50_ms:.2f} | {f.p99_ms:.2f} "
                f"| {f.server_cpu_ms:.3f} | {f.client_cpu_percent:.0f}% | {f.errors} |"
            )
    return rows


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
        f"## {seqserve} against the baseline tree (this / baseline, {CLIENTS['v2']} and seqserve loadtest)",
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


def servers_table(servers: Sequence[Served]) -> list[str]:
    rows = ["| server | processes | protocols | pads each request's ids | models |", "|---|---:|---|---|---|"]
    for s in servers:
        protocols = ", ".join(PROTOCOLS[p] for p in s.protocols)
        models = "all" if s.models is None else ", ".join(sorted(s.models))
        rows.append(f"| {s.name} | {s.processes} | {protocols} | {s.padding} | {models} |")
    return rows


def memory_rows(memories: Sequence[Memory]) -> list[str]:
    rows = ["| server | processes | RSS each | whole |", "|---|---:|---|---:|"]
    for m in memories:
        each = ", ".join(f"{r:.0f}" for r in m.rss_mib)
        rows.append(f"| {m.server} | {len(m.rss_mib)} | {each} | {sum(m.rss_mib):.0f} |")
    return rows


def worker_memory(memory: Memory) -> str:
    """A `--workers` server: its supervisor (the first process) and workers against one worker."""
    supervisor, *workers = memory.rss_mib
    worker = statistics.mean(workers)
    whole = sum(memory.rss_mib)
    return (
        f"- {memory.server}: supervisor {supervisor:.0f} MiB, {len(workers)} workers {worker:.0f} MiB each; "
        f"the whole server is {whole / worker:.2f}x one worker's RSS (target ≤ {WHOLE_OVER_WORKER_RSS:g}x)"
    )


def median_comparison(
    measurements: Sequence[NativeMeasurement],
    ours: tuple[str, str, Cell],
    theirs: tuple[str, str, Cell],
    value: Callable[[NativeMeasurement], float],
    compare: Callable[[float, float], float],
) -> float:
    """The median over rounds of `compare(ours, theirs)` in the rounds both were measured (NaN: none)."""
    mine = per_round_values(measurements, *ours, value)
    other = per_round_values(measurements, *theirs, value)
    rounds = sorted(mine.keys() & other.keys())
    return statistics.median(compare(mine[r], other[r]) for r in rounds) if rounds else math.nan


def statuses_text(group: Sequence[NativeMeasurement]) -> str:
    if any(m.counts is None for m in group):
        return "OK by construction"
    total: Counter[str] = Counter()
    for m in group:
        total.update(m.counts.statuses if m.counts else {})
    return ", ".join(f"{code} {count}" for code, count in sorted(total.items())) or "none counted"


def _shown(value: float, fmt: str) -> str:
    return "-" if math.isnan(value) else format(value, fmt)


def native_rows(measurements: Sequence[NativeMeasurement]) -> list[str]:
    """Medians over rounds of every native measurement, and beside each the median over rounds of its
    comparison with the floor measured in the same round, cell and protocol."""
    rows = [
        "| cell | h2load connections x streams | server | protocol | req/s | texts/s | mean latency µs "
        "| server CPU ms/req | gRPC statuses (all rounds) | req/s, % of the floor "
        "| CPU/req minus the floor's, ms | mean latency minus the floor's, µs |",
        "|---|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    groups: dict[tuple[Cell, str, str], list[NativeMeasurement]] = {}
    for m in measurements:
        groups.setdefault((m.cell, m.protocol, m.server), []).append(m)
    for (cell, protocol, server), group in sorted(
        groups.items(), key=lambda item: (item[0][0].model, item[0][0].batch, item[0][0].concurrency)
    ):
        ours, floor = (server, protocol, cell), (FLOOR, protocol, cell)
        share = median_comparison(
            measurements, ours, floor, lambda m: m.requests_per_s, lambda a, b: 100 * a / b
        )
        cpu = median_comparison(measurements, ours, floor, lambda m: m.server_cpu_ms, lambda a, b: a - b)
        latency = median_comparison(
            measurements, ours, floor, lambda m: m.mean_latency_ms, lambda a, b: 1e3 * (a - b)
        )
        connections, streams = layout(cell.concurrency)
        rows.append(
            f"| {cell.label} | {connections} x {streams} | {server} | {PROTOCOLS[protocol]} "
            f"| {statistics.median(m.requests_per_s for m in group):.0f} "
            f"| {statistics.median(m.texts_per_s for m in group):.0f} "
            f"| {statistics.median(m.mean_latency_ms for m in group) * 1e3:.0f} "
            f"| {statistics.median(m.server_cpu_ms for m in group):.3f} | {statuses_text(group)} "
            + ("| - | - | - |" if server == FLOOR else f"| {_shown(share, '.0f')} | {_shown(cpu, '+.3f')} "
               f"| {_shown(latency, '+.0f')} |")
        )  # fmt: skip
    return rows


def texts_rows(
    measurements: Sequence[NativeMeasurement], costs: Mapping[str, InProcessCost], shape: tuple[int, int]
) -> list[str]:
    """The 32-text cells of seqserve N=1 against the baseline tree (the median over rounds of the
    per-round ratio) and against the model's in-process bound (tokenize + runtime of batches of the same
    size of the same headlines, texts/s per CPU)."""
    rows = [
        f"| model | protocol | {ONE_WORKER} texts/s | {BASELINE} texts/s | this / baseline "
        "| in-process bound, texts/s per CPU | served / bound |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    cells = sorted({m.cell for m in measurements if m.cell.shape == shape}, key=lambda c: c.model)
    for cell in cells:
        for protocol in PROTOCOLS:
            ours = per_round_values(measurements, ONE_WORKER, protocol, cell, lambda m: m.texts_per_s)
            if not ours:
                continue
            base = per_round_values(measurements, BASELINE, protocol, cell, lambda m: m.texts_per_s)
            ratio = median_comparison(
                measurements, (ONE_WORKER, protocol, cell), (BASELINE, protocol, cell),
                lambda m: m.texts_per_s, lambda a, b: a / b,
            )  # fmt: skip
            cost = costs.get(cell.model)
            known = cost is not None and cell.batch in cost.cpu_us_per_text
            bound = cost.texts_per_cpu_second(cell.batch) if cost and known else math.nan
            served = statistics.median(ours.values())
            rows.append(
                f"| {cell.model} | {PROTOCOLS[protocol]} | {served:.0f} "
                f"| {_shown(statistics.median(base.values()) if base else math.nan, '.0f')} "
                f"| {_shown(ratio, '.2f')} | {_shown(bound, '.0f')} | {_shown(served / bound, '.2f')} |"
            )
    return rows


def client_line() -> str:
    return (
        f"rows by client: **{CLIENTS['v2']}** (V2 ModelInfer) and **{CLIENTS['seqserve']}** (Classify, TF "
        f"Serving Predict) in the tables of the Python clients; **{NATIVE_CLIENT}** (nghttp2-client, "
        "pre-encoded gRPC frames, every protocol) in the native tables"
    )
