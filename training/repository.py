"""Writes model versions into the model repository (format: models/README.md).

A version is assembled in a hidden staging directory next to its siblings and renamed into place in
one step, so a server polling the repository sees either no version N or the complete version N.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format

from seqserve.v1 import model_config_pb2

CONFIG_FILE = "config.pbtxt"
HISTORY_FILE = "history.json"
# Every run of the training job that published the version (format: models/README.md).
RUNS_FILE = "runs.json"
_STAGING_PREFIX = ".staging-"


def model_name(dataset: str, architecture: str) -> str:
    return f"{dataset}-{architecture}"


def existing_versions(model_dir: Path) -> list[int]:
    """Published versions, ascending; staging directories and stray files are not versions."""
    if not model_dir.is_dir():
        return []
    return sorted(
        int(entry.name)
        for entry in model_dir.iterdir()
        if entry.is_dir() and entry.name.isdigit() and int(entry.name) > 0
    )


@dataclass(frozen=True)
class StagedVersion:
    """A version being assembled: files go into `directory`, `publish` makes it visible."""

    model_dir: Path
    directory: Path

    def write_json(self, file_name: str, content: dict) -> None:
        (self.directory / file_name).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")

    def publish(self, config: model_config_pb2.ModelConfig) -> int:
        """Moves the staged files to `<model>/<N+1>` with config.pbtxt naming that version.

        If a concurrent run takes N+1 first, the rename fails and the next free number is used.
        """
        while True:
            version = (existing_versions(self.model_dir) or [0])[-1] + 1
            config.version = version
            write_config(self.directory / CONFIG_FILE, config)
            try:
                self.directory.rename(self.model_dir / str(version))
            except OSError:
                if not (self.model_dir / str(version)).exists():
                    raise
                continue
            return version


@contextmanager
def staged_version(models: Path, name: str) -> Iterator[StagedVersion]:
    """A staging directory for a new version of `name`, removed unless it was published."""
    model_dir = models / name
    model_dir.mkdir(parents=True, exist_ok=True)
    # Inside the model directory so the final rename stays on one file system (and is atomic).
    directory = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=model_dir))
    directory.chmod(0o755)  # mkdtemp's 0700 would hide the version from a server running as another user
    try:
        yield StagedVersion(model_dir=model_dir, directory=directory)
    finally:
        if directory.exists():
            shutil.rmtree(directory)


def write_config(path: Path, config: model_config_pb2.ModelConfig) -> None:
    path.write_text(text_format.MessageToString(config), encoding="utf-8")


def read_config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())


def read_history(version_dir: Path) -> dict[str, list[float]]:
    return json.loads((version_dir / HISTORY_FILE).read_text(encoding="utf-8"))


def read_runs(version_dir: Path) -> dict | None:
    """The version's runs.json, or None for a version written before the file existed."""
    path = version_dir / RUNS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def model_versions(models: Path) -> Iterator[list[tuple[Path, model_config_pb2.ModelConfig]]]:
    """Every model's published versions as (version directory, config), oldest first, by model name."""
    for model_dir in sorted(path for path in models.iterdir() if path.is_dir() and path.name != "tokenizers"):
        versions = [model_dir / str(version) for version in existing_versions(model_dir)]
        published = [
            (version_dir, read_config(version_dir / CONFIG_FILE))
            for version_dir in versions
            if (version_dir / CONFIG_FILE).is_file()
        ]
        if published:
            yield published
