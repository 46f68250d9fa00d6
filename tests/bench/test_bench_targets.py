from bench.run import costliest_model, protocol_cost, verdicts
from bench.served import Cell
from seqserve.loadtest.report import Summary

# echo: 4000 calls/s, client 80% + server 100% of a CPU -> 0.45 ms of CPU per call
ECHO_CPU = {"client": 80.0, "server": 100.0}


def summary(calls_per_s: float, p50_ms: float = 1.0, client_cpu: float = 50.0) -> Summary:
    return Summary(
        model="m", load="closed", sent=100, ok=100, errors={}, wall_s=1.0, requests_per_s=calls_per_s,
        texts_per_s=calls_per_s, latency_ms={"p50": p50_ms, "p99": 2 * p50_ms}, send_rate_per_s=calls_per_s,
        max_send_lag_ms=0.0, client_cpu_percent=client_cpu, server_ms={}, server_mean_batch_size=1.0,
        server_note="",
    )  # fmt: skip


def model_cells(name: str, on_32: float, off_32: float, runtime: str = "onnx") -> list[Cell]:
    concurrencies = (32,) if runtime == "tf" else (1, 32)
    return [
        Cell(name, batching, c, summary(calls if c == 32 else 900.0), 100.0, runtime=runtime)
        for batching, calls in (("on", on_32), ("off", off_32))
        for c in concurrencies
    ]


def echo_cells() -> list[Cell]:
    return [
        Cell("echo", "-", c, summary(4000.0, 0.5, ECHO_CPU["client"]), ECHO_CPU["server"], runtime="-")
        for c in (1, 32)
    ]


# in-process ms per batch at batch 1 and 32
IN_PROCESS = {
    "light": {1: 0.05, 32: 0.64},  # 0.02 ms/text: ceiling 2 / 0.47 ms = 4255 calls/s, 106% of echo
    "heavy": {1: 0.40, 32: 9.6},  # 0.30 ms/text: ceiling 2 / 0.75 ms = 2667 calls/s, 67% of echo
}


def by_target(results: list) -> dict[str, object]:
    return {v.target.split(":")[0]: v for v in results}


def test_throughput_target_names_the_cpu_ceiling_and_whether_it_is_reachable() -> None:
    cells = model_cells("light", 2500.0, 2000.0) + model_cells("heavy", 1600.0, 1300.0) + echo_cells()
    found = by_target(verdicts(["light", "heavy"], IN_PROCESS, cells))
    light, heavy = found["(a) light"], found["(a) heavy"]
    assert not light.passed and not light.out_of_reach  # 62% of echo, but the CPUs would allow 106%
    assert "at most 4255 = 106%" in light.evidence
    assert not heavy.passed and heavy.out_of_reach  # the CPUs allow only 67% of echo
    assert heavy.label == "FAIL, out of reach on this machine"
    assert "at most 2667 = 67%" in heavy.evidence


def test_throughput_target_passes_at_seventy_percent_of_echo() -> None:
    cells = model_cells("light", 2800.0, 2000.0) + model_cells("heavy", 1600.0, 1300.0) + echo_cells()
    assert by_target(verdicts(["light", "heavy"], IN_PROCESS, cells))["(a) light"].label == "PASS"


def test_batching_target_judges_the_costliest_model_per_runtime_present() -> None:
    assert costliest_model(IN_PROCESS) == "heavy"
    onnx_only = model_cells("light", 2800.0, 900.0) + model_cells("heavy", 1600.0, 1300.0) + echo_cells()
    results = [v for v in verdicts(["light", "heavy"], IN_PROCESS, onnx_only) if v.target.startswith("(b)")]
    assert [v.target.split(",")[1].strip().split(":")[0] for v in results] == ["runtime onnx"]
    assert not results[0].passed and "1.23x" in results[0].evidence
    with_tf = onnx_only + model_cells("heavy", 600.0, 75.0, runtime="tf")
    results = [v for v in verdicts(["light", "heavy"], IN_PROCESS, with_tf) if v.target.startswith("(b)")]
    assert [v.passed for v in results] == [False, True]
    assert "600 texts/s on vs 75 off = 8.00x" in results[1].evidence


def test_v2_is_compared_with_classify_on_the_same_runtime() -> None:
    cells = model_cells("heavy", 2000.0, 1300.0) + model_cells("heavy", 600.0, 75.0, runtime="tf")
    cells.append(Cell("heavy", "on", 32, summary(1800.0), 100.0, protocol="v2"))
    (row,) = [line for line in protocol_cost(cells) if line.startswith("| heavy | 32 |")]
    assert row.split("|")[3:6] == [" 2000 ", " 1800 ", " 0.90 "]  # the ONNX Classify cell, not TF's 600


def test_each_model_is_compared_with_the_echo_measured_beside_it() -> None:
    cells = model_cells("light", 2800.0, 2000.0) + model_cells("heavy", 1600.0, 1300.0) + echo_cells()
    # the machine got busier while "light" ran: the echo beside it did only 3500 calls/s
    cells.append(Cell("echo", "-", 32, summary(3500.0, 0.5, 80.0), 100.0, runtime="-", beside="light"))
    found = by_target(verdicts(["light", "heavy"], IN_PROCESS, cells))
    assert "2800 vs echo 3500 calls/s (measured beside it) = 80%" in found["(a) light"].evidence
    assert "1600 vs echo 4000 calls/s" in found["(a) heavy"].evidence  # none beside it: the reference


def test_rest_is_compared_with_v2_over_grpc() -> None:
    cells = model_cells("heavy", 2000.0, 1300.0)
    cells.append(Cell("heavy", "on", 32, summary(1800.0), 100.0, protocol="v2"))
    cells.append(Cell("heavy", "on", 32, summary(900.0), 100.0, protocol="rest"))
    (row,) = [line for line in protocol_cost(cells) if line.startswith("| heavy | 32 |")]
    assert row.split("|")[3:8] == [" 2000 ", " 1800 ", " 0.90 ", " 900 ", " 0.50 "]
