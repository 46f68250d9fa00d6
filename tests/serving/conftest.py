"""Serving fixtures: a running server (ONNX runtime, defaults) shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving.server_process import ServerProcess

SARCASM_TEXTS = [
    "area man passionate defender of what he imagines constitution to be",
    "scientists discover a new species of frog in the amazon rainforest",
    "nation's dogs vow to keep their humans safe from mailman",
    "",
    "THE SAME WORDS, SHOUTED!!! with punctuation?",
]
LONG_TEXT = " ".join(["scientists discover the cat sat on the mat"] * 12)  # beyond any tiny max_length
# Batches whose longest texts differ: a variable-length model gets each padded to a different width.
MIXED_BATCHES = [
    [*SARCASM_TEXTS, LONG_TEXT, "cat"],
    [""],
    ["cat"],
    [LONG_TEXT],
    ["nation", "", "nation's dogs vow"],
]


@pytest.fixture(scope="session")
def server(tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tiny_model_repository, tmp_path_factory.mktemp("server-logs")) as process:
        yield process
