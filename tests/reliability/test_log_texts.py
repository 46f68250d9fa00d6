"""Request texts reach the server's log only with --log-texts, even at DEBUG and on every path."""

from __future__ import annotations

import uuid

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton

from seqserve.v1 import classifier_pb2
from tests.reliability.conftest import call_code
from tests.serving.server_process import ServerProcess


def send_marker_every_way(server: ServerProcess, marker: str) -> None:
    """The marker text through each protocol and RPC, accepted and refused."""
    texts = [f"{marker} plain", f"{marker} second"]
    stub = server.stub
    stub.Classify(classifier_pb2.ClassifyRequest(model="sarcasm-gru", texts=texts), timeout=10)
    list(
        stub.ClassifyStream(
            iter([classifier_pb2.ClassifyRequest(model="sarcasm-flatten", texts=texts)]), timeout=10
        )
    )
    stub.Compare(classifier_pb2.CompareRequest(texts=texts), timeout=10)
    with triton.InferenceServerClient(server.address) as client:
        tensor = triton.InferInput("text", [2], "BYTES")
        tensor.set_data_from_numpy(np.array(texts, dtype=object))
        client.infer("sarcasm-gru", [tensor], client_timeout=10)
    refused = [
        classifier_pb2.ClassifyRequest(model="sarcasm-gru", texts=[marker * 2000]),  # over --max-text-bytes
        classifier_pb2.ClassifyRequest(model="no-such-model", texts=texts),
    ]
    for request in refused:
        code, _ = call_code(lambda r=request: stub.Classify(r, timeout=10))
        assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)


@pytest.mark.parametrize("log_texts", [False, True])
def test_texts_are_logged_only_when_enabled(tiny_model_repository, tmp_path, log_texts):
    marker = f"marker-{uuid.uuid4().hex}"
    flag = "--log-texts" if log_texts else "--no-log-texts"
    with ServerProcess(tiny_model_repository, tmp_path, "--log-level", "DEBUG", flag) as server:
        send_marker_every_way(server, marker)
        exit_code = server.terminate()
    assert exit_code == 0
    log = server.log_path.read_text()
    assert '"msg": "classify"' in log  # DEBUG request logs were written
    assert (marker in log) is log_texts
