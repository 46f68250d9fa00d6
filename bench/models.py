"""The models a benchmark measures: the latest version of each in a repository, as the server loads it."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format

from seqserve.v1 import model_config_pb2
from serving.versions import directory_version


@dataclass(frozen=True)
class ModelFiles:
    name: str
    version_dir: Path
    config: model_config_pb2.ModelConfig


def find_models(repository: Path) -> list[ModelFiles]:
    """The latest version of every model in the repository (the one the server answers with); none when
    the repository does not exist."""
    if not repository.is_dir():
        return []
    found = []
    for model_dir in sorted(p for p in repository.iterdir() if p.is_dir()):
        versions = {
            number: p
            for p in model_dir.iterdir()
            if (number := directory_version(p.name)) is not None and (p / "config.pbtxt").is_file()
        }
        if not versions:
            continue
        latest = versions[max(versions)]
        config = text_format.Parse((latest / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        found.append(ModelFiles(model_dir.name, latest, config))
    return found


def copy_tokenizer(config: model_config_pb2.ModelConfig, source: Path, into: Path) -> Path:
    """The model's tokenizer file at the same path in the repository `into` (copied once)."""
    target = into / config.tokenizer.path
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / config.tokenizer.path, target)
    return target
