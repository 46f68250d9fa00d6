"""The model outputs computed in-process straight from the repository files, independent of serving/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from google.protobuf import text_format
from tokenizers import Tokenizer

from seqserve.v1 import model_config_pb2


def read_config(repository: Path, name: str, version: int = 1) -> model_config_pb2.ModelConfig:
    text = (repository / name / str(version) / "config.pbtxt").read_text()
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def reference_probabilities(repository: Path, name: str, texts: list[str], version: int = 1) -> np.ndarray:
    """[len(texts), len(labels)] probabilities via tokenizers + onnxruntime on the model's own files."""
    config = read_config(repository, name, version)
    tokenizer = Tokenizer.from_file(str(repository / config.tokenizer.path))
    ids = np.array([e.ids for e in tokenizer.encode_batch(texts)], dtype=np.int32)
    session = ort.InferenceSession(str(repository / name / str(version) / config.export.onnx_file))
    (raw,) = session.run(None, {session.get_inputs()[0].name: ids})
    if config.output_kind == model_config_pb2.OUTPUT_KIND_SIGMOID:
        return np.concatenate([1 - raw, raw], axis=1)
    return raw
