"""Reads the model repository (models/README.md): names, versions and their config.pbtxt.

Every path the server opens is derived here, and every derivation goes through `_inside_root`: a model
name is checked against a strict pattern before it touches the file system, and the resolved path must
still lie inside the repository root (which also defeats symlinks pointing outside it).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format

from seqserve.v1 import model_config_pb2
from serving.versions import directory_version

log = logging.getLogger(__name__)

MODEL_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
MAX_MODEL_NAME_LENGTH = 128
CONFIG_FILE = "config.pbtxt"
# Directories under the root that hold shared files, not models.
RESERVED_NAMES = frozenset({"tokenizers"})


class RepositoryError(Exception):
    """The repository, a model directory or its config is unusable."""


class InvalidModelName(RepositoryError):
    """A model name that can never exist in any repository (and is never looked up on disk)."""


def validate_model_name(name: str) -> str:
    if len(name) > MAX_MODEL_NAME_LENGTH or not MODEL_NAME_PATTERN.fullmatch(name) or ".." in name:
        raise InvalidModelName(
            f"invalid model name {name[:MAX_MODEL_NAME_LENGTH]!r}: names match "
            f"{MODEL_NAME_PATTERN.pattern} (at most {MAX_MODEL_NAME_LENGTH} characters)"
        )
    return name


@dataclass(frozen=True)
class ModelVersionSource:
    """Where one model version lives, with its parsed config."""

    name: str
    version: int
    directory: Path
    config: model_config_pb2.ModelConfig


class ModelRepository:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        if not self.root.is_dir():
            raise RepositoryError(f"model repository {root} is not a directory")

    def _inside_root(self, relative: str | Path) -> Path:
        """Resolve a path relative to the root; refuse absolute paths and anything escaping the root."""
        relative_path = Path(relative)
        if relative_path.is_absolute():
            raise RepositoryError(f"{relative!s} is absolute; repository paths are relative to the root")
        resolved = (self.root / relative_path).resolve()
        if not resolved.is_relative_to(self.root):
            raise RepositoryError(f"{relative!s} resolves outside the model repository")
        return resolved

    def resolve_file(self, relative: str) -> Path:
        """A shared file named in a config (e.g. the tokenizer), confined to the repository."""
        return self._inside_root(relative)

    def model_names(self) -> list[str]:
        """Every directory under the root whose name is a valid model name and holds a version."""
        names = []
        for entry in sorted(self.root.iterdir()):
            if entry.name in RESERVED_NAMES or not MODEL_NAME_PATTERN.fullmatch(entry.name):
                continue
            try:
                if self.versions(entry.name):
                    names.append(entry.name)
            except RepositoryError as error:  # e.g. a symlink leading out of the repository
                log.warning("skipping repository entry", extra={"entry": entry.name, "error": str(error)})
        return names

    def model_directory(self, name: str) -> Path:
        validate_model_name(name)
        if name in RESERVED_NAMES:
            raise RepositoryError(f"{name!r} is reserved for shared files, not a model")
        return self._inside_root(name)

    def versions(self, name: str) -> list[int]:
        """Ascending version numbers of a model that have a config file. A directory that holds a
        config but whose name is no version number (serving.versions: '01', '²') is skipped with a log
        line, so that a stray directory stops neither start-up nor polling."""
        directory = self.model_directory(name)
        if not directory.is_dir():
            return []
        found = []
        for entry in directory.iterdir():
            if not (entry / CONFIG_FILE).is_file():
                continue
            version = directory_version(entry.name)
            if version is None:
                log.warning(
                    "skipping a directory that is not a version number (1, 2, ... without leading zeros)",
                    extra={"model": name, "entry": entry.name[:64]},
                )
                continue
            found.append(version)
        return sorted(found)

    def read_version(self, name: str, version: int) -> ModelVersionSource:
        directory = self._inside_root(Path(self.model_directory(name).name) / str(int(version)))
        config_path = directory / CONFIG_FILE
        try:
            config = text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())
        except (OSError, text_format.ParseError) as error:
            raise RepositoryError(f"{name} version {version}: cannot read {CONFIG_FILE}: {error}") from error
        _check_config(config, name, version)
        return ModelVersionSource(name=name, version=version, directory=directory, config=config)


def _check_config(config: model_config_pb2.ModelConfig, name: str, version: int) -> None:
    where = f"{name}/{version}/{CONFIG_FILE}"
    problems = []
    if config.name != name:
        problems.append(f"name is {config.name!r}, but the directory is {name!r}")
    if config.version != version:
        problems.append(f"version is {config.version}, but the directory is {version}")
    if config.max_length <= 0:
        problems.append("max_length must be positive")
    if len(config.labels) < 2:
        problems.append("needs at least two labels")
    if config.output_kind == model_config_pb2.OUTPUT_KIND_SIGMOID and len(config.labels) != 2:
        problems.append("a sigmoid model has exactly two labels")
    if config.output_kind == model_config_pb2.OUTPUT_KIND_UNSPECIFIED:
        problems.append("output_kind is unspecified")
    if not config.tokenizer.path or not config.tokenizer.sha256:
        problems.append("tokenizer { path sha256 } is required")
    if problems:
        raise RepositoryError(f"{where}: " + "; ".join(problems))
