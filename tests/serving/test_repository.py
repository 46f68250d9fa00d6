"""The repository reader: names, versions, configs, and paths that must never leave the root."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from serving.repository import InvalidModelName, ModelRepository, RepositoryError
from serving.tokenization import TokenizerMismatch, TokenizerStore

CONFIG = """name: "{name}"
version: {version}
architecture: "flatten"
dataset: "toy"
labels: "no"
labels: "yes"
max_length: 8
output_kind: OUTPUT_KIND_SIGMOID
tokenizer {{ path: "tokenizers/toy/tokenizer.json" sha256: "00" }}
"""


def write_version(root: Path, name: str, version: int, **overrides: str) -> Path:
    directory = root / name / str(version)
    directory.mkdir(parents=True)
    text = CONFIG.format(
        name=overrides.get("config_name", name), version=overrides.get("config_version", version)
    )
    (directory / "config.pbtxt").write_text(text)
    return directory


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """A repository next to an 'outside' directory that looks exactly like a model."""
    root, outside = tmp_path / "repo", tmp_path / "outside"
    write_version(root, "toy-flatten", 1)
    write_version(root, "toy-flatten", 3)
    (root / "toy-flatten" / "notes").mkdir()
    (root / "tokenizers" / "toy").mkdir(parents=True)
    write_version(outside, "evil", 1, config_name="evil")
    return root, outside


def test_discovers_models_and_ascending_versions(layout):
    root, _ = layout
    repository = ModelRepository(root)
    assert repository.model_names() == ["toy-flatten"]
    assert repository.versions("toy-flatten") == [1, 3]
    assert repository.read_version("toy-flatten", 3).config.version == 3
    assert repository.versions("absent") == []


@pytest.mark.parametrize(
    "name",
    ["..", "../outside/evil", "/etc", "toy-flatten/../../outside/evil", "a/b", "A", "", ".hidden", "x" * 200],
)
def test_names_that_could_address_other_paths_are_refused_before_any_lookup(layout, name):
    root, _ = layout
    with pytest.raises(InvalidModelName):
        ModelRepository(root).versions(name)


def test_symlink_escaping_the_root_is_refused(layout):
    root, outside = layout
    (root / "evil").symlink_to(outside / "evil", target_is_directory=True)
    repository = ModelRepository(root)
    with pytest.raises(RepositoryError, match="outside"):
        repository.versions("evil")
    assert repository.model_names() == ["toy-flatten"]


@pytest.mark.parametrize("relative", ["../outside/evil/1/config.pbtxt", "/etc/passwd"])
def test_shared_file_paths_in_configs_are_confined(layout, relative):
    root, _ = layout
    with pytest.raises(RepositoryError):
        ModelRepository(root).resolve_file(relative)


def test_config_that_disagrees_with_its_directory_is_refused(layout):
    root, _ = layout
    write_version(root, "toy-gru", 2, config_name="toy-lstm", config_version=7)
    with pytest.raises(RepositoryError, match=r"name is 'toy-lstm'.*version is 7"):
        ModelRepository(root).read_version("toy-gru", 2)


def test_tokenizer_is_loaded_once_and_checked_against_each_config(tiny_model_repository, tmp_path):
    source = tiny_model_repository / "tokenizers" / "sarcasm" / "tokenizer.json"
    path = tmp_path / "tokenizer.json"
    shutil.copy(source, path)
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    store = TokenizerStore()
    assert store.get(path, sha256) is store.get(path, sha256.upper())
    assert len(store) == 1
    with pytest.raises(TokenizerMismatch, match="trained with"):
        store.get(path, "0" * 64)


@pytest.mark.parametrize("stray", ["²", "٣", "01", "0", "-1", "+2", " 3", "1" * 200])
def test_only_plain_ascii_numbers_are_versions_and_strays_are_skipped_with_a_log_line(layout, stray, caplog):
    root, _ = layout
    directory = root / "toy-flatten" / stray
    directory.mkdir()
    (directory / "config.pbtxt").write_text(CONFIG.format(name="toy-flatten", version=1))
    repository = ModelRepository(root)
    with caplog.at_level("WARNING", logger="serving.repository"):
        assert repository.versions("toy-flatten") == [1, 3]
        assert repository.model_names() == ["toy-flatten"]
    skipped = [record for record in caplog.records if getattr(record, "entry", None) == stray[:64]]
    assert skipped, caplog.text
    assert "not a version" in skipped[0].getMessage()
