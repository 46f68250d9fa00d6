"""Tokenizers shared across models: each dataset's tokenizer.json is read once and checked by SHA-256.

All models of a dataset (and all their versions) were trained with the same file, so they share one
`tokenizers.Tokenizer`. A config whose recorded SHA-256 differs from the file on disk is refused: the
model would see different token ids than it was trained on and answer nonsense without any error.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from tokenizers import Tokenizer


class TokenizerMismatch(Exception):
    """The tokenizer file on disk is not the one the model was trained with."""


class TokenizerStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[Path, tuple[str, Tokenizer]] = {}

    def get(self, path: Path, expected_sha256: str) -> Tokenizer:
        with self._lock:
            if path not in self._loaded:
                data = path.read_bytes()
                tokenizer = Tokenizer.from_str(data.decode("utf-8"))
                self._loaded[path] = (hashlib.sha256(data).hexdigest(), tokenizer)
            sha256, tokenizer = self._loaded[path]
        if sha256 != expected_sha256.lower():
            raise TokenizerMismatch(
                f"{path} has SHA-256 {sha256}, but the model was trained with {expected_sha256}"
            )
        return tokenizer

    def __len__(self) -> int:
        return len(self._loaded)
