"""Model lifecycle while serving: versions published, broken and deleted under the polling server.

Versions are published as training publishes them: assembled in a hidden staging directory next to
their siblings and renamed into place in one step.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import onnx
import pytest
from google.protobuf import text_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from seqserve.v1 import classifier_pb2, model_config_pb2
from serving.settings import SettingsError, build_settings
from tests.conftest import TINY_MAX_LENGTH
from tests.reliability.conftest import NORMAL_TEXT, WAIT_S, assert_answers_normally, call_code, wait_until
from tests.serving.metrics_text import samples, value
from tests.serving.server_process import ServerProcess
from tests.serving.slow_model import SLOW_MODEL, add_slow_model, slow_onnx

POLL = "0.2"


def edit_config(version_dir: Path, change: Callable[[model_config_pb2.ModelConfig], None]) -> None:
    path = version_dir / "config.pbtxt"
    config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    change(config)
    path.write_text(text_format.MessageToString(config))


def publish(
    repository: Path,
    name: str,
    version: int,
    change: Callable[[Path], None] | None = None,
    source: str = "sarcasm-gru",
) -> None:
    """Copy version 1 of `source` into a staging directory, let `change` break it, rename it into place."""
    staging = repository / name / f".staging-{version}"
    staging.parent.mkdir(exist_ok=True)
    shutil.copytree(repository / source / "1", staging)

    def renumber(config: model_config_pb2.ModelConfig) -> None:
        config.name, config.version = name, version

    edit_config(staging, renumber)
    if change is not None:
        change(staging)
    staging.rename(repository / name / str(version))


class ClientLoop:
    """Threads sending Classify requests until stopped (bounded by count and time), recording each
    outcome as (code, version answering)."""

    def __init__(
        self, server: ServerProcess, models: list[str], threads: int = 4, max_requests: int = 20_000
    ):
        self._server = server
        self._models = models
        self._stop = threading.Event()
        self._max_requests = max_requests
        self.outcomes: list[tuple[str, grpc.StatusCode, int]] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def _run(self, index: int) -> None:
        deadline = time.monotonic() + 2 * WAIT_S
        sent = 0
        while not self._stop.is_set() and time.monotonic() < deadline and sent < self._max_requests:
            model = self._models[(index + sent) % len(self._models)]
            request = classifier_pb2.ClassifyRequest(model=model, texts=[NORMAL_TEXT, f"#{index}-{sent}"])
            code, response = call_code(lambda r=request: self._server.stub.Classify(r, timeout=10))
            version = response.version if code == grpc.StatusCode.OK else -1
            with self._lock:
                self.outcomes.append((model, code, version))
            sent += 1

    def versions_seen(self, model: str) -> list[int]:
        with self._lock:
            return [version for name, _, version in self.outcomes if name == model]

    def stop(self) -> list[tuple[str, grpc.StatusCode, int]]:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        return self.outcomes


def index(server: ServerProcess) -> list[tuple[str, str, str, str]]:
    stub = service_pb2_grpc.GRPCInferenceServiceStub(server.channel)
    response = stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(), timeout=10)
    return [(m.name, m.version, m.state, m.reason) for m in response.models]


def test_a_new_version_takes_over_under_load_with_zero_failed_requests(own_repository, tmp_path):
    with ServerProcess(own_repository, tmp_path, "--poll-interval", POLL) as server:
        load = ClientLoop(server, ["sarcasm-gru", "sarcasm-flatten"])
        wait_until(lambda: len(load.versions_seen("sarcasm-gru")) > 50, "requests before the switch")
        publish(own_repository, "sarcasm-gru", 2)
        wait_until(lambda: 2 in load.versions_seen("sarcasm-gru"), "version 2 answering")
        switched = len(load.outcomes)
        wait_until(lambda: len(load.outcomes) > switched + 50, "requests after the switch")
        outcomes = load.stop()
        metrics = server.metrics_text()
    failed = [(model, code) for model, code, _ in outcomes if code != grpc.StatusCode.OK]
    assert failed == [], f"{len(failed)} of {len(outcomes)} requests failed: {failed[:5]}"
    seen = [v for model, _, v in outcomes if model == "sarcasm-gru"]
    assert seen[0] == 1 and seen[-1] == 2
    assert {v for model, _, v in outcomes if model == "sarcasm-flatten"} == {1}
    # version 1 was retired: its series are gone, version 2 is ready
    ready = {
        labels["version"]: v
        for labels, v in samples(metrics, "seqserve_model_ready")
        if labels["model"] == "sarcasm-gru"
    }
    assert ready == {"2": 1.0}
    log = server.log_path.read_text()
    assert '"level": "error"' not in log


def truncate_model(version_dir: Path) -> None:
    model = version_dir / "model.onnx"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])


def garbage_model(version_dir: Path) -> None:
    (version_dir / "model.onnx").write_bytes(b"\x08\x07 this is not an onnx model " * 40)


def wrong_max_length(version_dir: Path) -> None:
    edit_config(version_dir, lambda config: setattr(config, "max_length", config.max_length + 10))


def missing_tokenizer(version_dir: Path) -> None:
    edit_config(
        version_dir, lambda config: setattr(config.tokenizer, "path", "tokenizers/gone/tokenizer.json")
    )


def int64_input(version_dir: Path) -> None:
    """A model whose input is int64 ids: ONNX Runtime fails its warm-up with an untyped error."""
    model = slow_onnx(TINY_MAX_LENGTH, matmuls=1)
    model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.INT64
    onnx.save(model, version_dir / "model.onnx")
    edit_config(version_dir, lambda config: config.ClearField("sequence"))  # fixed length, as the graph


def variable_length_claimed(version_dir: Path) -> None:
    """A graph of fixed length whose config says it takes any length."""
    onnx.save(slow_onnx(TINY_MAX_LENGTH, matmuls=1), version_dir / "model.onnx")
    edit_config(version_dir, lambda config: setattr(config.sequence, "variable_length", True))


def three_labels(version_dir: Path) -> None:
    def change(config: model_config_pb2.ModelConfig) -> None:
        config.labels.append("ironic")
        config.output_kind = model_config_pb2.OUTPUT_KIND_SOFTMAX

    edit_config(version_dir, change)


# (model, version, how it is broken, words its reason must contain)
BROKEN = [
    ("sarcasm-gru", 2, truncate_model, "cannot load"),
    ("sarcasm-flatten", 2, wrong_max_length, "must be max_length"),
    ("sarcasm-nontok", 1, missing_tokenizer, "tokenizers/gone/tokenizer.json"),
    ("sarcasm-garbage", 1, garbage_model, "cannot load"),
    ("sarcasm-labels", 1, three_labels, "3 labels"),
    ("sarcasm-int64", 1, int64_input, "tensor(int64)"),
    ("sarcasm-varlen", 1, variable_length_claimed, f"takes input_ids of fixed length {TINY_MAX_LENGTH}"),
]


def test_broken_versions_stay_unready_with_their_reason_while_every_other_model_serves(
    own_repository, tmp_path
):
    with ServerProcess(own_repository, tmp_path, "--poll-interval", POLL) as server:
        load = ClientLoop(server, ["sarcasm-gru", "sarcasm-flatten"], threads=2)
        for name, version, breakage, _ in BROKEN:
            publish(own_repository, name, version, breakage)
        expected = {(name, str(version)) for name, version, _, _ in BROKEN}
        wait_until(
            lambda: expected <= {(n, v) for n, v, state, _ in index(server) if state == "UNAVAILABLE"},
            "every broken version in the index",
        )
        time.sleep(5 * float(POLL))  # further scans must not retry unchanged broken versions
        entries = index(server)
        # a fixed export of a broken model loads at the next scan
        publish(own_repository, "sarcasm-gru", 3)
        wait_until(lambda: 3 in load.versions_seen("sarcasm-gru"), "the fixed version 3 answering")
        outcomes = load.stop()
        v2 = service_pb2_grpc.GRPCInferenceServiceStub(server.channel)
        ready = {
            name: v2.ModelReady(service_pb2.ModelReadyRequest(name=name), timeout=5).ready
            for name in ("sarcasm-nontok", "sarcasm-garbage", "sarcasm-labels", "sarcasm-flatten")
        }
        health = health_pb2_grpc.HealthStub(server.channel)
        overall = health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
        after_fix = index(server)
    assert [(m, c) for m, c, _ in outcomes if c != grpc.StatusCode.OK] == []
    assert {v for m, _, v in outcomes if m == "sarcasm-flatten"} == {1}
    reasons = {(n, v): why for n, v, state, why in entries if state == "UNAVAILABLE"}
    for name, version, _, words in BROKEN:
        assert words in reasons[(name, str(version))], reasons[(name, str(version))]
    assert ("sarcasm-gru", "1", "READY", "") in entries and ("sarcasm-flatten", "1", "READY", "") in entries
    assert ready == {
        "sarcasm-nontok": False,
        "sarcasm-garbage": False,
        "sarcasm-labels": False,
        "sarcasm-flatten": True,
    }
    assert overall == health_pb2.HealthCheckResponse.SERVING
    assert ("sarcasm-gru", "3", "READY", "") in after_fix
    assert not [e for e in after_fix if e[0] == "sarcasm-gru" and e[1] == "2"], "version 2 was superseded"
    log_lines = server.log_path.read_text().splitlines()
    failures = [line for line in log_lines if "model version failed to load" in line]
    for name, version, _, _ in BROKEN:
        mine = [line for line in failures if f'"model": "{name}", "version": {version},' in line]
        assert len(mine) == 1, f"{name}/{version} failure logged {len(mine)} times (retried unchanged?)"


def test_a_broken_model_at_start_up_leaves_the_others_serving(own_repository, tmp_path):
    """Regression: ONNX Runtime's untyped error from a warm-up escaped the registry and the whole
    server failed to start because of one model."""
    publish(own_repository, "sarcasm-int64", 1, int64_input)
    with ServerProcess(own_repository, tmp_path) as server:
        assert server.ready["models"] == {"sarcasm-flatten": [1], "sarcasm-gru": [1]}
        assert_answers_normally(server.stub)
        reasons = {(n, v): why for n, v, state, why in index(server) if state == "UNAVAILABLE"}
    assert "tensor(int64)" in reasons[("sarcasm-int64", "1")]


def test_deleting_a_model_drains_its_queued_requests_before_unloading(own_repository, tmp_path):
    # the slow model, one text per batch and one batch at a time: requests wait in its queue for seconds
    add_slow_model(own_repository)
    with ServerProcess(
        own_repository, tmp_path, "--poll-interval", POLL, "--max-batch-size", "1", "--inference-threads", "1"
    ) as server:
        v2 = service_pb2_grpc.GRPCInferenceServiceStub(server.channel)
        queued = [
            server.stub.Classify.future(
                classifier_pb2.ClassifyRequest(model=SLOW_MODEL, texts=[f"queued {i}"]), timeout=60
            )
            for i in range(8)
        ]
        wait_until(
            lambda: value(server.metrics_text(), "seqserve_requests_in_flight", model=SLOW_MODEL) == 8,
            "requests queued",
        )
        version_dir = own_repository / SLOW_MODEL / "1"
        version_dir.rename(own_repository / SLOW_MODEL / ".removed-1")  # one step, as an operator would
        wait_until(
            lambda: not v2.ModelReady(service_pb2.ModelReadyRequest(name=SLOW_MODEL), timeout=5).ready,
            "the model unloaded",
        )
        still_queued = sum(not future.done() for future in queued)
        code, _ = call_code(
            lambda: server.stub.Classify(
                classifier_pb2.ClassifyRequest(model=SLOW_MODEL, texts=["x"]), timeout=5
            )
        )
        results = [future.result() for future in queued]  # raises if any request was lost
        wait_until(
            lambda: (
                SLOW_MODEL
                not in {
                    labels["model"] for labels, _ in samples(server.metrics_text(), "seqserve_model_ready")
                }
            ),
            "its series removed once drained",
        )
        assert_answers_normally(server.stub, "sarcasm-gru")
    assert still_queued > 0, "every request had finished before the unload: nothing was drained"
    assert [len(r.predictions) for r in results] == [1] * 8
    assert code == grpc.StatusCode.NOT_FOUND  # new requests no longer reach it


def test_load_and_unload_are_refused_without_explicit_model_control(tiny_model_repository, tmp_path):
    with ServerProcess(tiny_model_repository, tmp_path) as server:
        v2 = service_pb2_grpc.GRPCInferenceServiceStub(server.channel)
        for call in (
            lambda: v2.RepositoryModelUnload(
                service_pb2.RepositoryModelUnloadRequest(model_name="sarcasm-gru"), timeout=5
            ),
            lambda: v2.RepositoryModelLoad(
                service_pb2.RepositoryModelLoadRequest(model_name="sarcasm-gru"), timeout=5
            ),
        ):
            code, error = call_code(call)
            assert code == grpc.StatusCode.PERMISSION_DENIED
            assert "--model-control explicit" in error.details()
        assert [(n, s) for n, _, s, _ in index(server)] == [
            ("sarcasm-flatten", "READY"),
            ("sarcasm-gru", "READY"),
        ]
        assert_answers_normally(server.stub)


def test_polling_and_explicit_model_control_exclude_each_other():
    with pytest.raises(SettingsError, match="exclude each other"):
        build_settings(["--poll-interval", "1", "--model-control", "explicit"], environ={})
    assert build_settings(["--model-control", "explicit"], environ={}).model_control == "explicit"
    assert build_settings([], environ={}).model_control == "none"


@pytest.mark.parametrize("outage", ["removed", "replaced by a file"])
def test_a_vanished_repository_leaves_the_served_versions_serving(own_repository, tmp_path, outage):
    """The repository root gone or unreadable during polling is a failed scan, not "every model was
    deleted": nothing is unloaded. (As root, chmod cannot make it unreadable; a file in its place
    fails the same way, NotADirectoryError.)"""
    with ServerProcess(own_repository, tmp_path, "--poll-interval", POLL) as server:
        own_repository.rename(own_repository.with_name("gone"))
        if outage == "replaced by a file":
            own_repository.write_text("not a directory")
        wait_until(lambda: "repository scan failed" in server.log_path.read_text(), "a failed scan")
        time.sleep(3 * float(POLL))
        for model in ("sarcasm-gru", "sarcasm-flatten"):
            assert_answers_normally(server.stub, model)
        assert value(server.metrics_text(), "seqserve_model_ready", model="sarcasm-gru") == 1
        assert server.terminate() == 0
    assert "unloading" not in server.log_path.read_text()
