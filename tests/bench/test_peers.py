import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton

from bench.harness import start_echo, start_seqserve
from bench.kserve_peer import trimmed
from bench.models import ModelFiles, find_models
from bench.peers.parity import PARITY_TEXTS, ParityError, check_parity, served_parity
from bench.peers.report import Run, markdown
from bench.peers.rounds import Cell, Measurement, measured_pairs, rotated
from bench.peers.servers import FLOOR, KSERVE_TRIMMED, Memory, Served, scratch_repository, trims
from bench.peers.tables import medians, worker_memory
from bench.peers.verdicts import margin, predict_verdicts, verdicts
from bench.proc import process_tree
from bench.targets import TargetResult
from seqserve.loadtest.report import Summary
from seqserve.loadtest.runner import LoadSpec
from seqserve.loadtest.texts import load_texts
from seqserve.v1 import model_config_pb2
from seqserve.verdicts import Judgement
from serving.sequence import SequencePadding
from tests.conftest import DATA_DIR


def summary(requests_per_s: float, p50_ms: float = 1.0) -> Summary:
    return Summary(
        model="m", load="closed", sent=100, ok=100, errors={}, wall_s=1.0, requests_per_s=requests_per_s,
        texts_per_s=requests_per_s, latency_ms={"p50": p50_ms, "p99": 2 * p50_ms}, send_rate_per_s=0.0,
        max_send_lag_ms=0.0, client_cpu_percent=50.0, server_ms={}, server_mean_batch_size=1.0,
        server_note="",
    )  # fmt: skip


def test_figures_are_medians_over_rounds_so_one_disturbed_round_does_not_move_them() -> None:
    cell = Cell("m", 32, 1)
    rounds = [
        Measurement("seqserve N=1", "v2", cell, r, summary(rps), 0.05)
        for r, rps in enumerate((900, 1000, 50))
    ]
    (figures,) = medians(rounds).values()
    assert figures.requests_per_s == 900
    assert figures.server_cpu_ms == pytest.approx(0.5)  # 0.05 s of CPU over 100 requests


def served(name: str, processes: int = 1, models: frozenset[str] | None = None) -> Served:
    """A server as the verdicts see it (name, process count, models); no process behind it."""
    return Served(name, None, ("v2", "seqserve"), processes, "-", models)  # type: ignore[arg-type]


SERVERS = [served("seqserve N=1"), served("seqserve N=2", 2), served(KSERVE_TRIMMED), served(FLOOR)]


def rounds_of(server: str, cell: Cell, rps: list[float], p50: float = 1.0, protocol: str = "v2") -> list:
    return [Measurement(server, protocol, cell, r, summary(x, p50), 0.05) for r, x in enumerate(rps)]


def judged(ours_rps: list[float], floor_rps: list[float]) -> TargetResult:
    """The c=32 req/s target of seqserve N=1 against the floor (85 % of it), round by round."""
    cell = Cell("m", 32, 1)
    measurements = rounds_of("seqserve N=1", cell, ours_rps) + rounds_of(FLOOR, cell, floor_rps)
    (result,) = [
        v
        for v in verdicts(measurements, SERVERS, {"m": "conv"}, "seqserve N=1")
        if "V2" in v.target and "req/s" in v.target
    ]
    assert result.target == "m, V2 ModelInfer: c=32 req/s ≥ 85 % of the no-op floor's"
    return result


def test_a_target_passes_only_when_the_range_over_rounds_clears_it() -> None:
    result = judged([900.0, 950.0, 880.0], [1000.0, 1000.0, 1000.0])  # 0.88..0.95
    assert result.label == "PASS"
    assert "ratio per round 0.88..0.95x over 3 round(s)" in result.evidence


def test_a_range_that_straddles_the_target_is_unclear_never_a_fail() -> None:
    result = judged([900.0, 800.0, 880.0], [1000.0, 1000.0, 1000.0])  # 0.80..0.90 around 0.85
    assert result.label == "unclear" and not result.passed


def test_a_range_wholly_on_the_wrong_side_fails() -> None:
    assert judged([700.0, 800.0], [1000.0, 1000.0]).label == "FAIL"


def test_rounds_are_paired_so_a_round_where_both_slowed_does_not_decide() -> None:
    """Round 2 was disturbed for both servers measured back to back: the ratio stays 0.9."""
    assert judged([900.0, 450.0], [1000.0, 500.0]).label == "PASS"


def test_margin_in_both_directions() -> None:
    assert margin([1.0, 2.0], 1.0, higher_is_better=True) == Judgement.SUPPORTS
    assert margin([0.5, 2.0], 1.0, higher_is_better=True) == Judgement.UNCLEAR
    assert margin([0.5, 0.9], 1.0, higher_is_better=True) == Judgement.CONTRADICTS
    assert margin([0.05, 0.12], 0.12, higher_is_better=False) == Judgement.SUPPORTS
    assert margin([0.05, 0.2], 0.12, higher_is_better=False) == Judgement.UNCLEAR
    assert margin([0.13, 0.2], 0.12, higher_is_better=False) == Judgement.CONTRADICTS


def test_the_p50_target_is_the_floors_p50_plus_a_margin_per_protocol() -> None:
    cell = Cell("m", 1, 1)
    measurements = [
        *rounds_of("seqserve N=1", cell, [1000.0] * 2, p50=0.55),
        *rounds_of(FLOOR, cell, [1000.0] * 2, p50=0.45),
        *rounds_of("seqserve N=1", cell, [1000.0] * 2, p50=0.70, protocol="seqserve"),
        *rounds_of(FLOOR, cell, [1000.0] * 2, p50=0.45, protocol="seqserve"),
    ]
    found = {v.target: v for v in verdicts(measurements, SERVERS, {"m": "lstm"}, "seqserve N=1")}
    assert found["m, V2 ModelInfer: c=1 p50 ≤ no-op floor + 0.12 ms"].label == "PASS"  # +0.10 ms
    assert found["m, Classify: c=1 p50 ≤ no-op floor + 0.12 ms"].label == "FAIL"  # +0.25 ms


def test_tf_serving_predict_is_judged_against_v2_on_the_same_server_and_round() -> None:
    c1, c32 = Cell("m", 1, 1), Cell("m", 32, 1)
    measurements = [
        *rounds_of("seqserve N=1", c1, [1000.0] * 2, p50=1.0),
        *rounds_of("seqserve N=1", c1, [1000.0] * 2, p50=1.05, protocol="tfs"),  # 1.05x
        *rounds_of("seqserve N=1", c32, [1000.0, 500.0]),
        *rounds_of("seqserve N=1", c32, [950.0, 300.0], protocol="tfs"),  # 0.95x, then 0.6x
        *rounds_of(FLOOR, c32, [9000.0, 9000.0], protocol="tfs"),  # another server: never the reference
    ]
    found = {v.target: v for v in predict_verdicts(measurements, ["m"], "seqserve N=1")}
    assert found["m, TF Serving Predict: c=1 p50 ≤ 1.1x V2 ModelInfer"].label == "PASS"
    assert found["m, TF Serving Predict: c=32 req/s ≥ 90 % of the V2 ModelInfer's"].label == "unclear"
    assert (
        "ratio per round 0.6..0.95x"
        in found["m, TF Serving Predict: c=32 req/s ≥ 90 % of the V2 ModelInfer's"].evidence
    )
    assert found["m, TF Serving Predict: server CPU per request at c=32 ≤ 1.1x V2 ModelInfer"].label == "PASS"
    assert predict_verdicts(measurements, ["other"], "seqserve N=1") == []  # no cells of that model


def test_texts_targets_follow_the_architecture_and_kserve_is_judged_on_its_own_protocol() -> None:
    cell = Cell("m", 8, 32)
    measurements = [
        *rounds_of("seqserve N=1", cell, [3000.0] * 2),
        *rounds_of("seqserve N=1", cell, [3000.0] * 2, protocol="seqserve"),
        *rounds_of(KSERVE_TRIMMED, cell, [1000.0] * 2),
        *rounds_of(FLOOR, cell, [5000.0] * 2),
        *rounds_of(FLOOR, cell, [5000.0] * 2, protocol="seqserve"),
    ]
    conv = [v.target for v in verdicts(measurements, SERVERS, {"m": "conv"}, "seqserve N=1")]
    assert conv == [
        "m, V2 ModelInfer: texts/s at c=8, 32 texts/request ≥ 40 % of the no-op floor's",
        "m, Classify: texts/s at c=8, 32 texts/request ≥ 40 % of the no-op floor's",
        "m, V2 ModelInfer: texts/s at c=8, 32 texts/request ≥ 2.5x KServe, padded to the longest text",
    ]
    (lstm,) = verdicts(measurements, SERVERS, {"m": "lstm"}, "seqserve N=1")
    assert lstm.target.endswith("≥ 2x KServe, padded to the longest text") and lstm.label == "PASS"


def test_a_two_process_server_is_in_no_target_against_one_process_references() -> None:
    cell = Cell("m", 32, 1)
    measurements = rounds_of("seqserve N=2", cell, [2000.0] * 2) + rounds_of(FLOOR, cell, [1000.0] * 2)
    assert verdicts(measurements, SERVERS, {"m": "conv"}, "seqserve N=2") == []


def test_targets_of_cells_left_out_are_left_out() -> None:
    """Regression: with --cells narrowed, the report crashed on the first target without its cell."""
    cell = Cell("m", 32, 1)
    measurements = rounds_of("seqserve N=1", cell, [900.0]) + rounds_of(FLOOR, cell, [1000.0])
    targets = [v.target for v in verdicts(measurements, SERVERS, {"m": "conv"}, "seqserve N=1")]
    assert targets == [
        "m, V2 ModelInfer: c=32 req/s ≥ 85 % of the no-op floor's",
        "m, V2 ModelInfer: server CPU per request at c=32 ≤ no-op floor + 0.08 ms",
    ]


def test_the_parity_check_refuses_a_server_that_answers_other_probabilities() -> None:
    reference = np.array([[0.2, 0.8], [0.6, 0.4]], dtype=np.float32)
    close = reference + 5e-6
    assert check_parity({"a": reference, "b": close}, "a", "m") == pytest.approx(5e-6, rel=1e-2)
    with pytest.raises(ParityError, match=r"m: .*b differs from a by up to 1.00e-03"):
        check_parity({"a": reference, "b": reference + 1e-3}, "a", "m")
    with pytest.raises(ParityError, match=r"b answered shape \(1, 2\)"):
        check_parity({"a": reference, "b": reference[:1]}, "a", "m")
    with pytest.raises(ParityError, match="b differs"):
        check_parity({"a": reference, "b": np.full_like(reference, np.nan)}, "a", "m")


def test_a_server_whose_answers_cannot_be_asked_for_is_refused_not_measured_unchecked() -> None:
    predict_only = Served("other server", None, ("predict",), 1, "-")  # type: ignore[arg-type]
    with pytest.raises(ParityError, match=r"other server speak.* no V2 ModelInfer"):
        served_parity([served("seqserve N=1"), predict_only], ["m"], ["a text"])


def test_served_parity_asks_every_server_but_the_floor_and_refuses_one_that_differs(
    tiny_model_repository: Path,
) -> None:
    texts = load_texts(DATA_DIR / "sarcasm" / "sarcasm.json", limit=PARITY_TEXTS)
    with (
        start_seqserve(tiny_model_repository, "test-parity") as seqserve,
        start_echo("test-parity-floor") as floor,
    ):
        ours = Served("seqserve N=1", seqserve, ("v2",), 1, "-")
        worst = served_parity(
            [ours, Served(FLOOR, floor, ("v2",), 1, "-", parity=False)], ["sarcasm-gru"], texts
        )
        assert worst == {"sarcasm-gru": 0.0}
        with pytest.raises(ParityError, match="no-op floor differs from seqserve N=1"):
            served_parity([ours, Served(FLOOR, floor, ("v2",), 1, "-")], ["sarcasm-gru"], texts)


def test_the_peer_cuts_each_batch_to_its_longest_text_plus_trim_never_beyond_max_length() -> None:
    ids = np.zeros((3, 12), dtype=np.int32)
    ids[0, :4] = [5, 6, 7, 8]
    ids[1, :2] = [9, 1]
    np.testing.assert_array_equal(trimmed(ids, 0), ids[:, :4])
    np.testing.assert_array_equal(trimmed(ids, 5), ids[:, :9])
    assert trimmed(ids, 20).shape == (3, 12)  # never beyond max_length
    assert trimmed(np.zeros((2, 12), dtype=np.int32), 0).shape == (2, 1)  # empty texts: one column
    for longest in range(13):  # the same width seqserve pads a variable-length batch to
        row = np.zeros((1, 12), dtype=np.int32)
        row[0, :longest] = 3
        padding = SequencePadding(12, variable_length=True, trailing_padding=5)
        assert trimmed(row, 5).shape[1] == padding.width(longest)


def test_each_trim_is_the_models_trailing_padding_and_fixed_length_graphs_get_none() -> None:
    def model(name: str, variable: bool, trailing: int) -> ModelFiles:
        config = model_config_pb2.ModelConfig(name=name)
        config.sequence.variable_length = variable
        config.sequence.trailing_padding = trailing
        return ModelFiles(name, Path(name), config)

    models = [model("conv", True, 5), model("lstm", True, 0), model("gru", True, 0), model("old", False, 0)]
    assert trims(models) == {5: ["conv"], 0: ["lstm", "gru"]}


def test_servers_are_rotated_so_each_leads_one_round() -> None:
    pairs = measured_pairs(
        [served("seqserve N=1"), served(KSERVE_TRIMMED, models=frozenset({"other"})), served(FLOOR)],
        Cell("m", 1, 1),
    )
    assert [(s.name, p) for s, p in pairs] == [
        ("seqserve N=1", "v2"), (FLOOR, "v2"), ("seqserve N=1", "seqserve"), (FLOOR, "seqserve"),
    ]  # fmt: skip
    orders = [rotated(pairs, r) for r in range(len(pairs))]
    assert [order[0] for order in orders] == pairs
    assert all(sorted(map(id, order)) == sorted(map(id, pairs)) for order in orders)
    assert rotated(pairs, len(pairs)) == pairs


def test_a_workers_server_is_judged_against_one_of_its_workers() -> None:
    line = worker_memory(Memory("seqserve N=2", [25.0, 170.0, 180.0]))
    assert "supervisor 25 MiB, 2 workers 175 MiB each" in line
    assert "2.14x one worker's RSS (target ≤ 2.2x)" in line  # (25 + 170 + 180) / 175


def test_the_scratch_repository_and_the_peer_manifest_name_the_same_files(
    tiny_model_repository: Path, tmp_path: Path
) -> None:
    models = find_models(tiny_model_repository)
    manifest = scratch_repository(models, tiny_model_repository, tmp_path / "models")
    assert [m.name for m in find_models(tmp_path / "models")] == [m.name for m in models]
    for entry, model in zip(manifest, models, strict=True):
        assert Path(entry["onnx"]).read_bytes() == (model.version_dir / "model.onnx").read_bytes()
        assert Path(entry["tokenizer"]).is_relative_to(tmp_path / "models")
        assert (
            Path(entry["tokenizer"]).read_bytes()
            == (tiny_model_repository / model.config.tokenizer.path).read_bytes()
        )
        assert entry["sigmoid"] is True  # both tiny models end in a sigmoid
    json.dumps(manifest)  # what the peer reads


def test_the_floor_answers_v2_with_the_shape_the_models_answer() -> None:
    with start_echo("test-floor") as floor:
        client = triton.InferenceServerClient(floor.address)
        text = triton.InferInput("text", [3], "BYTES")
        text.set_data_from_numpy(np.array([b"a", b"b", b"c"], dtype=object))
        assert client.is_model_ready("any")
        probabilities = client.infer("any", [text]).as_numpy("probabilities")
        assert probabilities.shape == (3, 2) and probabilities.dtype == np.float32
        client.close()


def test_process_tree_holds_the_children_of_children() -> None:
    grandchild = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(30)"
    )
    child = subprocess.Popen([sys.executable, "-c", grandchild], stdout=subprocess.PIPE, text=True)
    try:
        grandchild_pid = int(child.stdout.readline())
        assert process_tree(child.pid) == [child.pid, grandchild_pid]
    finally:
        child.kill()
        child.wait()
        subprocess.run(["kill", str(grandchild_pid)], check=False)


def test_the_report_says_who_pads_how_and_keeps_the_two_process_server_out_of_the_targets() -> None:
    cell = Cell("m", 32, 1)
    measurements = [
        *rounds_of("seqserve N=1", cell, [900.0, 950.0]),
        *rounds_of("seqserve N=2", cell, [1500.0, 1600.0]),
        *rounds_of(KSERVE_TRIMMED, cell, [800.0, 800.0]),
        *rounds_of(FLOOR, cell, [1000.0, 1000.0]),
    ]
    servers = [
        Served("seqserve N=1", None, ("v2",), 1, "to the batch's longest text"),  # type: ignore[arg-type]
        Served("seqserve N=2", None, ("v2",), 2, "to the batch's longest text"),  # type: ignore[arg-type]
        Served(KSERVE_TRIMMED, None, ("v2",), 1, "to the request's longest text + 5", frozenset({"m"})),  # type: ignore[arg-type]
        Served(FLOOR, None, ("v2",), 1, "none: constant answers", parity=False),  # type: ignore[arg-type]
    ]
    spec = LoadSpec(duration_s=1.0, warmup_s=0.5, channels=4)
    run = Run(
        "cmd", spec, 2, ((1, 1, 1), (1, 1, 1)), measurements, servers, {"m": "conv"}, {"m": 0.0}, [], []
    )
    report = markdown(run)
    assert f"| {KSERVE_TRIMMED} | 1 | V2 ModelInfer | to the request's longest text + 5 | m |" in report
    assert "- **PASS** m, V2 ModelInfer: c=32 req/s ≥ 85 % of the no-op floor's" in report
    assert "seqserve N=2 runs 2 processes and no reference here does" in report
    assert f"| m, c=32, 1 text/request | {KSERVE_TRIMMED} | 1.16 |" in report  # 925 / 800
