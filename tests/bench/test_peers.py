import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton

from bench.harness import start_echo
from bench.models import find_models
from bench.peers import (
    FLOOR,
    KSERVE,
    Cell,
    Figures,
    Measurement,
    Memory,
    medians,
    scratch_repository,
    verdicts,
    worker_memory,
)
from bench.proc import process_tree
from seqserve.loadtest.report import Summary


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


def figures(rps: float, p50: float, cpu_ms: float) -> Figures:
    return Figures(rps, rps, p50, 2 * p50, cpu_ms, 60.0, 0)


def all_cells(server: str, rps: float, p50: float, cpu_ms: float) -> dict:
    return {(server, "v2", Cell("m", c, b)): figures(rps, p50, cpu_ms) for c, b in ((1, 1), (32, 1), (8, 32))}


def judged(rps: float, p50: float, cpu_ms: float) -> dict:
    """Verdicts of "ours" at these figures, against KServe at 1000 req/s, 1 ms, 0.8 ms of CPU."""
    table = (
        all_cells("ours", rps, p50, cpu_ms)
        | all_cells(KSERVE, 1000.0, 1.0, 0.8)
        | all_cells(FLOOR, 3000.0, 0.7, 0.2)
    )
    return {v.target: v for v in verdicts(table, ["m"], "ours")}


def test_each_target_compares_with_kserve_in_its_direction_and_names_the_floor() -> None:
    found = judged(2100.0, 0.75, 0.3)
    assert found["m: c=1 p50 ≤ 0.8x KServe"].passed  # 0.75 ms vs 1.0
    assert found["m: c=32 req/s ≥ 2x KServe"].passed  # 2100 vs 1000
    assert found["m: server CPU per request at c=32 ≤ 0.5x KServe"].passed  # 0.3 vs 0.8
    assert not found["m: texts/s at c=8 with 32 texts/request ≥ 4x KServe"].passed  # 2.1x only
    assert "the no-op floor: 3000 req/s = 3.00x KServe" in found["m: c=32 req/s ≥ 2x KServe"].evidence


def test_targets_of_cells_left_out_are_left_out() -> None:
    """Regression: with --cells narrowed, the report crashed on the first target without its cell."""
    table = {
        key: f
        for key, f in (
            all_cells("ours", 900.0, 0.9, 0.5)
            | all_cells(KSERVE, 1000.0, 1.0, 0.8)
            | all_cells(FLOOR, 3000, 0.7, 0.2)
        ).items()
        if key[2].batch == 1
    }
    targets = [v.target for v in verdicts(table, ["m"], "ours")]
    assert len(targets) == 4 and not any("32 texts/request" in t for t in targets)


def test_lower_is_better_targets_fail_above_their_limit() -> None:
    found = judged(900.0, 0.9, 0.5)
    assert not found["m: c=1 p50 ≤ 0.8x KServe"].passed  # 0.9x
    assert not found["m: c=32 p99 ≤ 0.6x KServe"].passed
    assert "0.9 vs 1 ms = 0.90x" in found["m: c=1 p50 ≤ 0.8x KServe"].evidence


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
