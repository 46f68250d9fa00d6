"""Request texts from real data: a JSON array of records (the sarcasm headlines), a file of lines, or the
.txt files of one folder inside a tar archive, named as a path through it
(`aclImdb_v1.tar.gz/aclImdb/test`: IMDB's test reviews, one text per file)."""

from __future__ import annotations

import json
import random
import tarfile
from collections.abc import Sequence
from pathlib import Path

# Fields tried, in order, in each record of a JSON array.
TEXT_FIELDS = ("headline", "text")
MAX_TEXTS = 100_000
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")


class TextSourceError(ValueError):
    """The file holds no usable texts."""


def load_texts(path: Path, limit: int = MAX_TEXTS, seed: int = 0) -> list[str]:
    """Up to `limit` non-empty texts in a seeded random order (so requests are not sorted by length)."""
    archive = _archive_of(path)
    if archive is not None:
        texts = _archive_texts(archive, path.relative_to(archive).as_posix())
    elif path.suffix == ".json":
        records = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(records, list):
            raise TextSourceError(f"{path}: expected a JSON array of records")
        texts = [_record_text(record) for record in records]
    else:
        texts = path.read_text(encoding="utf-8").splitlines()
    texts = [text for text in texts if text.strip()]
    if not texts:
        raise TextSourceError(f"{path} holds no non-empty texts")
    random.Random(seed).shuffle(texts)
    return texts[:limit]


def _archive_of(path: Path) -> Path | None:
    """The tar archive a path starts with, if it names one (the rest is a folder inside it)."""
    for candidate in (path, *path.parents):
        if candidate.name.endswith(ARCHIVE_SUFFIXES) and candidate.is_file():
            return candidate
    return None


def _archive_texts(archive: Path, folder: str) -> list[str]:
    prefix = f"{folder}/" if folder != "." else ""
    texts = []
    with tarfile.open(archive) as tar:
        for member in tar:
            if member.isfile() and member.name.startswith(prefix) and member.name.endswith(".txt"):
                file = tar.extractfile(member)
                assert file is not None  # a regular file
                texts.append(file.read().decode("utf-8", errors="replace"))
    return sorted(texts)  # member order is the archive's; the shuffle below decides


def _record_text(record: object) -> str:
    if isinstance(record, str):
        return record
    if isinstance(record, dict):
        for field in TEXT_FIELDS:
            if isinstance(record.get(field), str):
                return record[field]
    raise TextSourceError(f"a record has none of the fields {', '.join(TEXT_FIELDS)}: {record!r:.80}")


class TextCycle:
    """Hands out consecutive slices of the texts, wrapping around, so every request differs."""

    def __init__(self, texts: Sequence[str], batch: int) -> None:
        self._texts = list(texts)
        self._batch = batch
        self._next = 0

    def take(self) -> list[str]:
        start = self._next
        self._next = (start + self._batch) % len(self._texts)
        return [self._texts[(start + i) % len(self._texts)] for i in range(self._batch)]
