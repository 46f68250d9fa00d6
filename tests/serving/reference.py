"""The model outputs computed in-process straight from the repository files, independent of serving/.

Every row is padded to max_length, whatever the config's `sequence` says: a variable-length model
served with shorter padding must answer exactly this.
"""

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


def full_padding_ids(tokenizer: Tokenizer, texts: list[str], max_length: int) -> np.ndarray:
    """The tokenizer's own ids, each row padded with id 0 after the text to max_length."""
    rows = [tokenizer.encode(text).ids for text in texts]
    assert all(len(row) <= max_length for row in rows), "the tokenizer must truncate to max_length"
    return np.array([row + [0] * (max_length - len(row)) for row in rows], dtype=np.int32)


def reference_probabilities(repository: Path, name: str, texts: list[str], version: int = 1) -> np.ndarray:
    """[len(texts), len(labels)] probabilities via tokenizers + onnxruntime on the model's own files."""
    config = read_config(repository, name, version)
    tokenizer = Tokenizer.from_file(str(repository / config.tokenizer.path))
    ids = full_padding_ids(tokenizer, texts, config.max_length)
    session = ort.InferenceSession(str(repository / name / str(version) / config.export.onnx_file))
    (raw,) = session.run(None, {session.get_inputs()[0].name: ids})
    if config.output_kind == model_config_pb2.OUTPUT_KIND_SIGMOID:
        return np.concatenate([1 - raw, raw], axis=1)
    return raw
