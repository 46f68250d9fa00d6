"""Helpers for the reliability tests: each test (or module) runs its own real server subprocess."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from seqserve.v1 import classifier_pb2, classifier_pb2_grpc

NORMAL_TEXT = "area man passionate defender of what he imagines constitution to be"
WAIT_S = 30.0  # how long a test waits for the server to reach a state before it fails


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def call_code(call: Callable[[], Any]) -> tuple[grpc.StatusCode, Any]:
    """Run one RPC; (OK, response) or (its status code, the error)."""
    try:
        return grpc.StatusCode.OK, call()
    except grpc.RpcError as error:
        return error.code(), error


def assert_answers_normally(stub: classifier_pb2_grpc.ClassifierStub, model: str = "sarcasm-gru") -> None:
    """A plain request succeeds: the server is alive and serving."""
    response = stub.Classify(classifier_pb2.ClassifyRequest(model=model, texts=[NORMAL_TEXT]), timeout=10)
    assert len(response.predictions) == 1
    assert abs(sum(s.score for s in response.predictions[0].scores) - 1) < 1e-4


@pytest.fixture
def own_repository(tiny_model_repository: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny repository that a test may change (add, break or delete versions)."""
    root = tmp_path / "models"
    shutil.copytree(tiny_model_repository, root)
    return root
