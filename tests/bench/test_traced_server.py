"""bench.traced_server: a real `seqserve serve` that traces its allocations only when told, and writes
snapshots from a forked child while it goes on serving."""

from __future__ import annotations

import subprocess
import tracemalloc
from pathlib import Path

import grpc
import pytest

from bench.harness import ServerProcess, free_port, serve_command
from bench.soak import warning_lines
from bench.traced_server import MemoryProbe, ProbeError
from seqserve.v1 import classifier_pb2, classifier_pb2_grpc

FRAMES = 5


def classify(stub: classifier_pb2_grpc.ClassifierStub, count: int) -> None:
    for i in range(count):
        request = classifier_pb2.ClassifyRequest(model="sarcasm-gru", texts=[f"local man wins {i} awards"])
        assert len(stub.Classify(request, timeout=30).predictions) == 1


def test_tracing_starts_on_command_and_a_snapshot_leaves_the_server_serving(
    tiny_model_repository: Path, tmp_path: Path
) -> None:
    command = serve_command(
        tiny_model_repository, "--log-level", "WARNING", port=free_port(), module="bench.traced_server"
    )
    snapshot = tmp_path / "after.tracemalloc"
    with ServerProcess(command, tmp_path / "server.log", stdin=subprocess.PIPE) as server:
        probe = MemoryProbe(server.process)
        with grpc.insecure_channel(server.address) as channel:
            stub = classifier_pb2_grpc.ClassifierStub(channel)
            classify(stub, 20)
            untraced = probe.ask("memory")
            assert untraced["tracing"] is False and untraced["traced_bytes"] == 0
            # glibc here; the models' ONNX Runtime arenas are mmapped apart
            assert untraced["malloc_heap_bytes"] > 0 and untraced["malloc_mmapped_bytes"] > 0
            assert untraced["malloc_free_bytes"] >= 0
            with pytest.raises(ProbeError, match="not tracing"):
                probe.ask(f"snapshot {snapshot}")
            assert probe.ask(f"start {FRAMES}") == {"tracing": True}
            classify(stub, 20)
            traced = probe.ask("memory")
            assert traced["tracing"] is True and traced["traced_bytes"] > 0
            assert traced["tracemalloc_bytes"] > untraced["tracemalloc_bytes"]
            assert probe.ask(f"snapshot {snapshot}") == {"path": str(snapshot)}
            classify(stub, 20)  # the fork took nothing from the server
            with pytest.raises(ProbeError, match="unknown command 'stop'"):
                probe.ask("stop")
        assert server.terminate() == 0
    loaded = tracemalloc.Snapshot.load(str(snapshot))
    assert loaded.traceback_limit == FRAMES and loaded.traces
    assert warning_lines((tmp_path / "server.log").read_text()) == []
