import asyncio
from pathlib import Path

import pytest

from bench.native_client import H2loadResult
from bench.peers.cpu_account import account, accounted, accounts, executed_batch
from bench.peers.model_cost import InProcessCost, served_batch
from bench.peers.native import NativeMeasurement, ServerCounts, layout, native_pairs
from bench.peers.report import Run, markdown
from bench.peers.rounds import Cell
from bench.peers.servers import BASELINE, FLOOR, KSERVE, Served
from bench.peers.verdicts import native_verdicts
from bench.request_path import StepCosts, in_process_server, request_steps
from seqserve.loadtest.runner import LoadSpec


def native(
    server: str, cell: Cell, round_: int, rps: float, latency_ms: float = 0.2, cpu_ms: float = 0.1,
    protocol: str = "v2", counts: ServerCounts | None = None,
) -> NativeMeasurement:  # fmt: skip
    """A measurement of 1000 answered calls whose server used `cpu_ms` of CPU per call."""
    result = H2loadResult(rps, latency_ms / 1e3, 1000, 0)
    return NativeMeasurement(server, protocol, cell, round_, result, cpu_ms, counts)


def ok(calls: int = 1000, **fields: float) -> ServerCounts:
    return ServerCounts(
        {"OK": calls}, **{"model_seconds": 0.0, "batches": 0.0, "batched_texts": 0.0, **fields}
    )


C32, C1, TEXTS = Cell("m", 32, 1), Cell("m", 1, 1), Cell("m", 8, 32)


def found(measurements: list[NativeMeasurement]) -> dict[str, str]:
    return {v.target: v.label for v in native_verdicts(measurements, ["m"])}


def test_native_targets_against_the_floor_of_the_same_round() -> None:
    measurements = [
        native("seqserve N=1", C32, 0, 6500, cpu_ms=0.19, counts=ok()),
        native(FLOOR, C32, 0, 10000, cpu_ms=0.10),
        native("seqserve N=1", C32, 1, 3300, cpu_ms=0.21, counts=ok()),  # a slow round for both
        native(FLOOR, C32, 1, 5000, cpu_ms=0.10),
        native("seqserve N=1", C1, 0, 2000, latency_ms=0.30, counts=ok()),
        native(FLOOR, C1, 0, 7000, latency_ms=0.12),
    ]
    assert found(measurements) == {
        "m, V2 ModelInfer: seqserve N=1 c=32 req/s ≥ 60 % of the no-op floor's": "PASS",  # 0.65, 0.66
        "m, V2 ModelInfer: seqserve N=1 server CPU per request at c=32 ≤ no-op floor + 0.1 ms": "unclear",
        "m, V2 ModelInfer: seqserve N=1 c=1 mean latency ≤ no-op floor + 0.15 ms": "FAIL",  # +0.18 ms
    }


def test_the_32_text_target_is_against_the_baseline_tree_and_two_workers_against_one() -> None:
    measurements = [
        native("seqserve N=1", TEXTS, 0, 1500, counts=ok()),
        native(BASELINE, TEXTS, 0, 1000, counts=ok()),
        native("seqserve N=1", C32, 0, 3000, counts=ok()),
        native("seqserve N=2", C32, 0, 4500, counts=ok()),
    ]
    assert found(measurements) == {
        "m, V2 ModelInfer: seqserve N=1 texts/s at c=8, 32 texts/request ≥ 1.4x seqserve baseline": "PASS",
        "m, V2 ModelInfer: seqserve N=2 c=32 req/s ≥ 1.6x seqserve N=1": "FAIL",  # 1.5x
    }
    assert native_verdicts(measurements[:1], ["m"]) == []  # no baseline measured: no target


def test_only_v2_is_judged_classify_and_predict_are_shown_beside() -> None:
    measurements = [
        native("seqserve N=1", C32, 0, 1000, protocol="seqserve", counts=ok()),
        native(FLOOR, C32, 0, 10000, protocol="seqserve"),
    ]
    assert native_verdicts(measurements, ["m"]) == []


def test_the_cpu_account_splits_the_served_cpu_and_keeps_the_remainder_apart() -> None:
    steps = StepCosts(decode_us={1: 10.0, 32: 40.0}, encode_us={1: 5.0, 32: 20.0}, crossing_us=80.0)
    # 1000 calls: 0.4 s of CPU; 250 batches of 4 texts, 0.15 s on their threads
    counts = ok(model_seconds=0.15, batches=250, batched_texts=1000)
    ours = native("seqserve N=1", C32, 0, 3000, cpu_ms=0.4, counts=counts)
    floor = native(FLOOR, C32, 0, 9000, cpu_ms=0.12)
    assert executed_batch(ours) == ("m", 1, 4)
    a = account(ours, floor, steps, {("m", 1, 4): 100.0})  # a batch of 4: 100 µs of CPU in process
    assert a.served_ms == pytest.approx(0.4) and a.transport_ms == pytest.approx(0.12)
    assert a.decode_ms == pytest.approx(0.010) and a.encode_ms == pytest.approx(0.005)
    assert a.model_ms == pytest.approx(0.025)  # a quarter of the batch's CPU per one-text request
    assert a.thread_ms == pytest.approx(0.15)  # the histograms' time, beside, in no sum
    assert a.crossings_ms == pytest.approx(0.080 * 250 / 1000)  # one crossing per batch
    assert a.remainder_ms == pytest.approx(0.4 - 0.12 - 0.010 - 0.025 - 0.005 - 0.020)
    assert a.mean_batch == 4.0
    with pytest.raises(ValueError, match="no /metrics"):
        account(floor, floor, steps, {})


def test_the_account_is_the_median_of_rounds_each_against_its_own_floor() -> None:
    steps = StepCosts({1: 0.0}, {1: 0.0}, 0.0)
    counts = ok(batches=1000, batched_texts=1000)
    measurements = [
        native("seqserve N=1", C32, 0, 1, cpu_ms=0.40, counts=counts),
        native(FLOOR, C32, 0, 1, cpu_ms=0.10),
        native("seqserve N=1", C32, 1, 1, cpu_ms=0.50, counts=counts),
        native(FLOOR, C32, 1, 1, cpu_ms=0.30),
        native("seqserve N=1", C32, 2, 1, cpu_ms=0.45, counts=counts),
        native(FLOOR, C32, 2, 1, cpu_ms=0.20),
        native("seqserve N=1", C1, 0, 1, cpu_ms=0.45, counts=counts),  # no floor in its round: no account
        native("seqserve N=1", C32, 0, 1, protocol="tfs", counts=counts),  # another protocol
    ]
    pairs = accounted(measurements, "seqserve N=1", FLOOR, "v2")
    assert len(pairs) == 3
    (cell, a), *rest = accounts(pairs, {"m": steps}, {("m", 1, 1): 100.0}).items()
    assert cell == C32 and rest == []
    assert a.served_ms == pytest.approx(0.45) and a.transport_ms == pytest.approx(0.20)
    assert a.remainder_ms == pytest.approx(0.45 - 0.20 - 0.1)
    assert accounts(pairs, {"m": steps}, {}) == {}  # no batch cost measured: no account


def served(name: str, processes: int = 1, native_: bool = True) -> Served:
    return Served(name, None, ("v2", "tfs", "seqserve"), processes, "-", native=native_)  # type: ignore[arg-type]


def test_the_native_client_measures_seqserve_and_the_floor_and_two_workers_only_at_c32_over_v2() -> None:
    servers = [
        served("seqserve N=1"),
        served("seqserve N=2", 2),
        served(KSERVE, native_=False),
        served(FLOOR),
    ]
    at_c32 = [(s.name, p) for s, p in native_pairs(servers, C32)]
    assert at_c32[:3] == [("seqserve N=1", "v2"), ("seqserve N=2", "v2"), (FLOOR, "v2")]
    assert ("seqserve N=2", "tfs") not in at_c32 and all(name != KSERVE for name, _ in at_c32)
    assert all(name != "seqserve N=2" for name, _ in native_pairs(servers, C1))
    assert [layout(c) for c in (1, 32, 8, 5)] == [(1, 1), (4, 8), (2, 4), (1, 5)]


def test_the_report_names_each_rows_client_and_fails_a_cell_with_a_non_ok_status() -> None:
    bad = ServerCounts({"OK": 998, "CANCELLED": 2}, 0.1, 500, 1000)
    measurements = [
        native(
            "seqserve N=1",
            C32,
            0,
            6000,
            cpu_ms=0.2,
            counts=ok(model_seconds=0.1, batches=500, batched_texts=1000),
        ),
        native(FLOOR, C32, 0, 10000, cpu_ms=0.1),
        native("seqserve N=1", TEXTS, 0, 1000, counts=bad),
        native(FLOOR, TEXTS, 0, 5000),
    ]
    steps = {"m": StepCosts({1: 10.0, 32: 30.0}, {1: 5.0, 32: 10.0}, 80.0)}
    batch_us = {("m", 1, 2): 60.0, ("m", 32, 2): 60.0}
    run = Run(
        "cmd", LoadSpec(duration_s=2.5, warmup_s=0.5), 1, ((1, 1, 1), (1, 1, 1)), [],
        [served("seqserve N=1"), served(FLOOR)], {"m": "conv"}, {"m": 0.0},
        [InProcessCost("m", {1: 50.0, 32: 10.0})], [], measurements, steps, batch_us,
    )  # fmt: skip
    report = markdown(run)
    assert "**tritonclient.grpc.aio** (V2 ModelInfer)" in report and "**h2load**" in report
    assert (
        "| m, c=32, 1 text/request | 4 x 8 | seqserve N=1 | V2 ModelInfer | 6000 | 6000 | 200 | 0.200 "
        "| OK 1000 | 60 | +0.100 | +0 |" in report
    )
    assert (
        "| no-op floor | V2 ModelInfer | 10000 | 10000 | 200 | 0.100 | OK by construction | - | - | - |"
        in report
    )
    assert (
        "- **FAIL** m, c=8, 32 texts/request, seqserve N=1, V2 ModelInfer, round 1: 2 CANCELLED; "
        "2 of h2load's 1000 answered calls not counted OK" in report
    )
    assert "- **PASS** m, V2 ModelInfer: seqserve N=1 c=32 req/s ≥ 60 % of the no-op floor's" in report
    # 32 texts: 32,000 texts/s against an in-process bound of 100,000 texts/s per CPU
    assert "| m | V2 ModelInfer | 32000 | - | - | 100000 | 0.32 |" in report
    # the account: 0.2 served = 0.1 floor + 0.01 decode + 0.03 model + 0.005 encode + 0.04 crossings + 0.015
    assert (
        "| m, c=32, 1 text/request | 0.200 | 0.100 (50 %) | 0.010 (5 %) | 0.030 (15 %) | 0.005 (2 %) "
        "| 0.040 (20 %) | 0.015 (7 %) | 0.100 | 2.0 |" in report
    )


def test_the_request_steps_are_timed_on_a_real_request_path(tiny_model_repository: Path) -> None:
    """The account's in-process steps run the server's own decode, admission and encode code: a change of
    the request path that breaks them breaks here, not in a long benchmark run."""

    async def steps() -> StepCosts:
        async with in_process_server(str(tiny_model_repository), "sarcasm-gru") as server:
            return await request_steps(
                server, "sarcasm-gru", ["one headline", "another"] * 16, (1, 32), 1, 20
            )

    costs = asyncio.run(steps())
    assert sorted(costs.decode_us) == sorted(costs.encode_us) == [1, 32]
    assert all(us > 0 for us in [*costs.decode_us.values(), *costs.encode_us.values(), costs.crossing_us])


def test_an_executed_batch_is_the_calls_texts_over_and_over() -> None:
    """h2load sends the same frame every call: the server's batches hold the request's texts repeated."""
    assert served_batch(["a", "b", "c"], 2, 5) == ["a", "b", "a", "b", "a"]
    assert served_batch(["a", "b", "c"], 1, 3) == ["a", "a", "a"]
