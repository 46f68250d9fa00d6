"""Serving fixtures: a running server (ONNX runtime, defaults) shared by the integration tests."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DATA_DIR
from tests.serving.gate import Gate
from tests.serving.reference import reference_probabilities
from tests.serving.server_process import ServerProcess

SARCASM_TEXTS = [
    "area man passionate defender of what he imagines constitution to be",
    "scientists discover a new species of frog in the amazon rainforest",
    "nation's dogs vow to keep their humans safe from mailman",
    "",
    "THE SAME WORDS, SHOUTED!!! with punctuation?",
]
# Headlines the two-sided texts are chosen from, and how far from 0.5 each model must place them, so that
# no rounding between the reference and the server can move one across.
CANDIDATE_HEADLINES = 2000
LABEL_MARGIN = 0.1
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


@pytest.fixture(scope="module")
def gate() -> Iterator[Gate]:
    """A gate on the slow model's runs, for a module's server started with `env=gate.env`."""
    with contextlib.closing(Gate()) as opened:
        yield opened


@pytest.fixture(scope="session")
def two_sided_texts(tiny_model_repository: Path) -> list[str]:
    """[a headline every tiny model calls sarcastic, one none does], each at least LABEL_MARGIN from 0.5,
    chosen from the dataset by the models' own reference outputs: label checks that include them fail
    if label selection ignores the probabilities."""
    rows = json.loads((DATA_DIR / "sarcasm" / "sarcasm.json").read_text())[:CANDIDATE_HEADLINES]
    headlines = [row["headline"] for row in rows]
    models = sorted(path.parents[1].name for path in tiny_model_repository.glob("sarcasm-*/*/config.pbtxt"))
    sarcastic = np.stack([reference_probabilities(tiny_model_repository, m, headlines)[:, 1] for m in models])
    chosen = []
    for side in (sarcastic.min(axis=0) > 0.5 + LABEL_MARGIN, sarcastic.max(axis=0) < 0.5 - LABEL_MARGIN):
        found = np.flatnonzero(side)
        assert found.size, f"no headline of the first {CANDIDATE_HEADLINES} on this side for {models}"
        chosen.append(headlines[found[0]])
    return chosen
