"""The TensorFlow runtime serves the same answers as ONNX Runtime; ONNX-only serving never imports TF."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from seqserve.v1 import classifier_pb2
from tests.serving.conftest import MIXED_BATCHES, SARCASM_TEXTS
from tests.serving.reference import reference_probabilities
from tests.serving.server_process import REPO_ROOT, ServerProcess


@pytest.fixture(scope="module")
def tf_server(
    tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    with ServerProcess(
        tiny_model_repository, tmp_path_factory.mktemp("tf-server-logs"), "--runtime", "tf"
    ) as process:
        yield process


def test_tf_runtime_agrees_with_onnx_runtime(tf_server, server, tiny_model_repository):
    listed = tf_server.stub.ListModels(classifier_pb2.ListModelsRequest(), timeout=10)
    assert {v.runtime for m in listed.models for v in m.versions} == {"tf"}
    compared = tf_server.stub.Compare(classifier_pb2.CompareRequest(texts=SARCASM_TEXTS), timeout=30)
    for result in compared.results:
        assert result.runtime == "tf"
        tf_scores = np.array([[s.score for s in p.scores] for p in result.predictions])
        onnx = server.stub.Classify(
            classifier_pb2.ClassifyRequest(model=result.model, texts=SARCASM_TEXTS), timeout=10
        )
        onnx_scores = np.array([[s.score for s in p.scores] for p in onnx.predictions])
        np.testing.assert_allclose(tf_scores, onnx_scores, atol=1e-5)
        expected = reference_probabilities(tiny_model_repository, result.model, SARCASM_TEXTS)
        np.testing.assert_allclose(tf_scores, expected, atol=1e-5)
        for texts in MIXED_BATCHES:  # each padded as far as the model needs, on TensorFlow too
            request = classifier_pb2.ClassifyRequest(model=result.model, texts=texts)
            scores = [
                [s.score for s in p.scores] for p in tf_server.stub.Classify(request, timeout=30).predictions
            ]
            expected = reference_probabilities(tiny_model_repository, result.model, texts)
            np.testing.assert_allclose(scores, expected, atol=1e-5, err_msg=f"{result.model} {texts}")


LOAD_ONNX_ONLY = """
import asyncio, sys
from pathlib import Path
from serving.inference_pool import InferencePool
from serving.metrics import ServerMetrics
from serving.registry import ModelRegistry
from serving.repository import ModelRepository
from serving.settings import Settings

async def main():
    settings = Settings(model_repository=Path(sys.argv[1]), runtime="onnx")
    registry = ModelRegistry(ModelRepository(settings.model_repository), settings, ServerMetrics(),
                             InferencePool(1))
    await registry.load_all()
    model = registry.resolve("sarcasm-gru")
    print(model.runtime.name, sorted(registry.snapshot.names()), "tensorflow" in sys.modules)
    await registry.close()

asyncio.run(main())
"""


def test_onnx_only_server_never_imports_tensorflow(tiny_model_repository):
    result = subprocess.run(
        [sys.executable, "-c", LOAD_ONNX_ONLY, str(tiny_model_repository)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["onnx", "['sarcasm-flatten',", "'sarcasm-gru']", "False"]
