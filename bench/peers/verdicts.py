"""The targets of a peers run and their verdicts: a figure of seqserve against a reference server's
(the floor, KServe, one worker, the baseline tree) in the same cell, protocol and round, judged by the
range of the per-round comparisons (PASS only when the whole range clears the target)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from bench.peers.model_cost import InProcessCost
from bench.peers.native import NATIVE_METRICS, WORKERS_SHAPE, NativeMeasurement
from bench.peers.rounds import METRICS, Cell, Measurement
from bench.peers.servers import BASELINE, FLOOR, KSERVE_TRIMMED, PROTOCOLS, Served, seqserve_name
from bench.targets import TargetResult
from seqserve.verdicts import Judgement


class RoundFigures(Protocol):
    """A measurement as the verdicts see it (Measurement, NativeMeasurement)."""

    @property
    def server(self) -> str: ...
    @property
    def protocol(self) -> str: ...
    @property
    def cell(self) -> Cell: ...
    @property
    def round(self) -> int: ...


M = TypeVar("M", bound=RoundFigures)


@dataclass(frozen=True)
class Target:
    """A figure of seqserve in one cell shape against a reference server's in the same cell, protocol and
    round: their ratio (`relation` "ratio") or difference ("excess") at least (or at most) `limit`."""

    name: str
    shape: tuple[int, int]  # concurrency, texts per request
    metric: str  # a key of METRICS (NATIVE_METRICS for the native targets)
    reference: str  # FLOOR, a KServe form, BASELINE or another seqserve server
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

# With the native client (h2load), V2 ModelInfer: seqserve N=1 against the floor and the baseline tree,
# and two workers against one.
ONE_WORKER = seqserve_name(1)
NATIVE_TARGETS = (
    Target("c=32 req/s", (32, 1), "requests_per_s", FLOOR, "ratio", 0.60, True, "req/s", protocols=("v2",)),
    Target(
        "server CPU per request at c=32", (32, 1), "server_cpu_ms", FLOOR, "excess", 0.10, False, "ms",
        protocols=("v2",),
    ),
    Target(
        "c=1 mean latency", (1, 1), "mean_latency_ms", FLOOR, "excess", 0.15, False, "ms", protocols=("v2",)
    ),
    Target(TEXTS_AT_C8, (8, 32), "texts_per_s", BASELINE, "ratio", 1.4, True, "texts/s", protocols=("v2",)),
)  # fmt: skip
WORKERS_TARGET = Target(
    "c=32 req/s", WORKERS_SHAPE, "requests_per_s", ONE_WORKER, "ratio", 1.6, True, "req/s", protocols=("v2",)
)
WORKERS_SUBJECT = seqserve_name(2)


def margin(values: Sequence[float], limit: float, higher_is_better: bool) -> Judgement:
    """SUPPORTS when the whole range of the per-round values clears `limit`, CONTRADICTS when the whole
    range is on the wrong side, UNCLEAR when it straddles the limit."""
    low, high = min(values), max(values)
    good, bad = (low >= limit, high < limit) if higher_is_better else (high <= limit, low > limit)
    if good:
        return Judgement.SUPPORTS
    return Judgement.CONTRADICTS if bad else Judgement.UNCLEAR


def per_round(measurements: Sequence[M], server: str, protocol: str, cell: Cell) -> dict[int, M]:
    return {m.round: m for m in measurements if (m.server, m.protocol, m.cell) == (server, protocol, cell)}


def per_round_values(
    measurements: Sequence[M], server: str, protocol: str, cell: Cell, value: Callable[[M], float]
) -> dict[int, float]:
    return {r: value(m) for r, m in per_round(measurements, server, protocol, cell).items()}


def judge(
    target: Target, label: str, ours: Mapping[int, float], theirs: Mapping[int, float], cost: str
) -> TargetResult | None:
    """One target from the per-round figures of the rounds both servers were measured in (None: no such
    round), by `margin`."""
    rounds = sorted(ours.keys() & theirs.keys())
    if not rounds:
        return None
    compared = [target.compare(ours[r], theirs[r]) for r in rounds]
    judgement = margin(compared, target.limit, target.higher_is_better)
    kind, shown = ("ratio", "x") if target.relation == "ratio" else ("difference", f" {target.unit}")
    mid_ours = statistics.median(ours[r] for r in rounds)
    mid_theirs = statistics.median(theirs[r] for r in rounds)
    evidence = (
        f"{kind} per round {min(compared):.3g}..{max(compared):.3g}{shown} over {len(rounds)} round(s) "
        f"(medians {mid_ours:.4g} vs {mid_theirs:.4g} {target.unit})" + (f"; {cost}" if cost else "")
    )
    return TargetResult(
        label, judgement == Judgement.SUPPORTS, evidence, unclear=judgement == Judgement.UNCLEAR
    )


def judge_pair(
    target: Target,
    measurements: Sequence[M],
    metrics: Mapping[str, Callable[[M], float]],
    label: str,
    ours: tuple[str, str, Cell],
    theirs: tuple[str, str, Cell],
    cost: str = "",
) -> TargetResult | None:
    """`target` of (server, protocol, cell) `ours` against `theirs`, round by round."""
    value = metrics[target.metric]
    return judge(
        target,
        label,
        per_round_values(measurements, *ours, value),
        per_round_values(measurements, *theirs, value),
        cost,
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
                result = judge_pair(
                    target, measurements, METRICS,
                    f"{model}, {PROTOCOLS[protocol]}: {target.name} {target.bound}",
                    (subject, protocol, cell), (reference.name, protocol, cell), cost,
                )  # fmt: skip
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
            result = judge_pair(
                target, measurements, METRICS, f"{model}, {PROTOCOLS['tfs']}: {target.name} {target.bound}",
                (subject, "tfs", cell), (subject, "v2", cell),
            )  # fmt: skip
            if result is not None:
                results.append(result)
    return results


def native_verdicts(
    measurements: Sequence[NativeMeasurement],
    models: Sequence[str],
    costs: Mapping[str, InProcessCost] | None = None,
) -> list[TargetResult]:
    """The native client's targets per model: seqserve N=1 against the floor and the baseline tree, two
    workers against one; a target whose servers or cell were not measured is left out."""
    pairs = [(target, ONE_WORKER) for target in NATIVE_TARGETS] + [(WORKERS_TARGET, WORKERS_SUBJECT)]
    results = []
    for model in models:
        for target, subject in pairs:
            cell = Cell(model, *target.shape)
            cost = costs[model].line(cell.batch) if costs and model in costs else ""
            for protocol in target.protocols:
                label = f"{model}, {PROTOCOLS[protocol]}: {subject} {target.name} {target.bound}"
                result = judge_pair(
                    target, measurements, NATIVE_METRICS, label,
                    (subject, protocol, cell), (target.reference, protocol, cell), cost,
                )  # fmt: skip
                if result is not None:
                    results.append(result)
    return results
