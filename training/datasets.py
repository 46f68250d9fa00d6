"""Dataset loaders: the sarcasm headlines, IMDB reviews and any user `text,label` file.

Every loader returns the same `TextDataset`, split deterministically from a seed, so the rest of the
pipeline never knows where the texts came from.
"""

from __future__ import annotations

import csv
import json
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SARCASM_LABELS = ("not_sarcastic", "sarcastic")
IMDB_LABELS = ("negative", "positive")
# The sarcasm split used throughout the TensorFlow course: 20,000 of 26,709 headlines for training.
SARCASM_TRAIN_SIZE = 20_000
SARCASM_FULL_SIZE = 26_709
CUSTOM_VALIDATION_FRACTION = 0.2
DATASET_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_IMDB_MEMBER = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg)/(\d+)_\d+\.txt$")


def held_out_name(dataset: str) -> str:
    """What the held-out split is called: IMDB's is its official test set."""
    return "test" if dataset == "imdb" else "validation"


class DatasetError(Exception):
    """A dataset cannot be used as given; the message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class TextDataset:
    """Texts with integer class ids (index into `labels`), already split."""

    name: str
    labels: tuple[str, ...]
    train_texts: list[str]
    train_labels: np.ndarray
    validation_texts: list[str]
    validation_labels: np.ndarray
    # What the held-out split is called in reports: "validation", or "test" for IMDB's official split.
    validation_name: str = "validation"

    @property
    def is_binary(self) -> bool:
        return len(self.labels) == 2

    def limited(self, limit: int | None) -> TextDataset:
        """The first `limit` examples, shared between the splits in proportion to their sizes."""
        total = len(self.train_texts) + len(self.validation_texts)
        if limit is None or limit >= total:
            return self
        if limit < 2:
            raise DatasetError(f"--limit {limit} leaves no example for one of the splits; use at least 2")
        n_train = min(max(1, round(limit * len(self.train_texts) / total)), limit - 1)
        n_val = limit - n_train
        return TextDataset(
            name=self.name,
            labels=self.labels,
            train_texts=self.train_texts[:n_train],
            train_labels=self.train_labels[:n_train],
            validation_texts=self.validation_texts[:n_val],
            validation_labels=self.validation_labels[:n_val],
            validation_name=self.validation_name,
        )


def load_dataset(spec: str, data_dir: Path, seed: int) -> TextDataset:
    """`spec` is "sarcasm", "imdb" or the path of a CSV/JSONL file with `text` and `label` columns."""
    if spec == "sarcasm":
        return load_sarcasm(data_dir / "sarcasm" / "sarcasm.json", seed)
    if spec == "imdb":
        return load_imdb(data_dir / "imdb", seed)
    path = Path(spec)
    if path.suffix.lower() in (".csv", ".jsonl", ".json") or path.exists():
        return load_text_label_file(path, seed)
    raise DatasetError(
        f"unknown dataset {spec!r}: use 'sarcasm', 'imdb', or the path of a .csv/.jsonl file "
        "with columns 'text' and 'label'"
    )


def custom_dataset_name(path: Path) -> str:
    """A repository-safe dataset name from a file name, e.g. 'My Reviews.csv' -> 'my_reviews'."""
    name = re.sub(r"[^a-z0-9_.-]+", "_", path.stem.lower()).strip("_.-")
    if not DATASET_NAME_PATTERN.match(name):
        raise DatasetError(
            f"cannot derive a dataset name from {path.name!r}; rename the file to e.g. reviews.csv"
        )
    return name


# ---------------------------------------------------------------- sarcasm


def load_sarcasm(path: Path, seed: int) -> TextDataset:
    """The headlines file as a JSON array or as JSON lines (the original Kaggle file's layout)."""
    records = _read_json_records(path)
    texts, ids = [], []
    for number, record in enumerate(records, start=1):
        missing = [key for key in ("headline", "is_sarcastic") if key not in record]
        if missing:
            raise DatasetError(
                f"{path}: record {number} lacks {', '.join(missing)}; expected headline, is_sarcastic"
            )
        if record["is_sarcastic"] not in (0, 1):
            raise DatasetError(
                f"{path}: record {number} has is_sarcastic={record['is_sarcastic']!r}, expected 0 or 1"
            )
        texts.append(str(record["headline"]))
        ids.append(int(record["is_sarcastic"]))
    _check_classes(path, ids, len(SARCASM_LABELS))
    train_size = min(SARCASM_TRAIN_SIZE, round(len(texts) * SARCASM_TRAIN_SIZE / SARCASM_FULL_SIZE))
    return _shuffled_split("sarcasm", SARCASM_LABELS, texts, ids, train_size, seed)


def _read_json_records(path: Path) -> list[dict]:
    content = _read_text(path)
    stripped = content.lstrip()
    if not stripped:
        raise DatasetError(f"{path} is empty; it should hold a JSON array or JSON lines of records")
    try:
        if stripped.startswith("["):
            records = json.loads(stripped)
        else:
            records = [json.loads(line) for line in content.splitlines() if line.strip()]
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path} is not valid JSON / JSON lines: {error}") from error
    if not records:
        raise DatasetError(f"{path} holds no records")
    if not all(isinstance(record, dict) for record in records):
        raise DatasetError(f"{path}: every record must be a JSON object")
    return records


# ---------------------------------------------------------------- IMDB


def load_imdb(directory: Path, seed: int) -> TextDataset:
    """aclImdb from an extracted `aclImdb/` folder if present, else streamed from `aclImdb_v1.tar.gz`."""
    folder, archive = directory / "aclImdb", directory / "aclImdb_v1.tar.gz"
    if folder.is_dir():
        reviews = _imdb_from_folder(folder)
    elif archive.is_file():
        reviews = _imdb_from_archive(archive)
    else:
        raise DatasetError(
            f"IMDB not found: expected {archive} (the Large Movie Review Dataset archive) or an extracted "
            f"{folder}/; pass --data-dir pointing at the folder that contains imdb/"
        )
    splits: dict[str, tuple[list[str], list[int]]] = {"train": ([], []), "test": ([], [])}
    for (split, _label, _number), (text, label_id) in sorted(reviews):
        splits[split][0].append(text)
        splits[split][1].append(label_id)
    for split, (_texts, ids) in splits.items():
        _check_classes(directory / f"aclImdb/{split}", ids, len(IMDB_LABELS))
    train_texts, train_ids = _shuffled(*splits["train"], seed)
    test_texts, test_ids = _shuffled(*splits["test"], seed)
    return TextDataset(
        name="imdb",
        labels=IMDB_LABELS,
        train_texts=train_texts,
        train_labels=train_ids,
        validation_texts=test_texts,
        validation_labels=test_ids,
        validation_name=held_out_name("imdb"),
    )


ImdbReview = tuple[tuple[str, str, int], tuple[str, int]]


def _imdb_review(member_path: str, read: Callable[[], bytes]) -> ImdbReview | None:
    """The review at `member_path`, or None for the archive's other files (README, vocabularies)."""
    match = _IMDB_MEMBER.search(member_path)
    if match is None:
        return None
    split, polarity, number = match.group(1), match.group(2), int(match.group(3))
    text = read().decode("utf-8", errors="replace")
    return (split, polarity, number), (text, 1 if polarity == "pos" else 0)


def _imdb_from_archive(archive: Path) -> Iterator[ImdbReview]:
    """Streams members one by one: the archive is never extracted to disk."""
    try:
        with tarfile.open(archive, mode="r|gz") as stream:
            for member in stream:
                if member.isfile():
                    file = stream.extractfile(member)
                    review = _imdb_review(member.name, file.read) if file is not None else None
                    if review is not None:
                        yield review
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DatasetError(f"{archive} is not a readable .tar.gz archive: {error}") from error


def _imdb_from_folder(folder: Path) -> Iterable[ImdbReview]:
    for path in folder.glob("*/*/*.txt"):
        review = _imdb_review(path.relative_to(folder.parent).as_posix(), path.read_bytes)
        if review is not None:
            yield review


# ---------------------------------------------------------------- user files


def load_text_label_file(path: Path, seed: int) -> TextDataset:
    """A CSV (header row) or JSON-lines file with `text` and `label`; any number of distinct labels."""
    rows = _read_csv_rows(path) if path.suffix.lower() == ".csv" else _read_json_records(path)
    if not rows:
        raise DatasetError(f"{path} holds no rows")
    texts, raw_labels = [], []
    for number, row in enumerate(rows, start=1):
        missing = [column for column in ("text", "label") if column not in row]
        if missing:
            raise DatasetError(
                f"{path}: row {number} has no column {', '.join(missing)}; the file needs columns "
                f"'text' and 'label' (found: {', '.join(map(str, row)) or 'none'})"
            )
        texts.append(str(row["text"]))
        raw_labels.append(str(row["label"]).strip())
    labels = _sorted_labels(set(raw_labels))
    if len(labels) < 2:
        raise DatasetError(
            f"{path}: every row has label {labels[0]!r}; a classifier needs at least two distinct labels"
        )
    index = {label: position for position, label in enumerate(labels)}
    ids = [index[label] for label in raw_labels]
    train_size = len(texts) - max(1, round(len(texts) * CUSTOM_VALIDATION_FRACTION))
    if train_size < 1:
        raise DatasetError(
            f"{path} has {len(texts)} row(s); at least 2 are needed for a train/validation split"
        )
    return _shuffled_split(custom_dataset_name(path), tuple(labels), texts, ids, train_size, seed)


def _read_csv_rows(path: Path) -> list[dict]:
    content = _read_text(path)
    try:
        reader = csv.DictReader(content.splitlines())
        rows = list(reader)
    except csv.Error as error:
        raise DatasetError(f"{path} is not valid CSV: {error}") from error
    if reader.fieldnames is None:
        raise DatasetError(f"{path} is empty; it needs a header row with 'text' and 'label'")
    return rows


def _sorted_labels(labels: set[str]) -> list[str]:
    """Numeric labels in numeric order ("2" before "10"), anything else alphabetically."""
    if all(re.fullmatch(r"-?\d+", label) for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


# ---------------------------------------------------------------- shared helpers


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise DatasetError(f"dataset file not found: {path}; check --data-dir / --dataset")
    return path.read_text(encoding="utf-8")


def _check_classes(source: Path, ids: list[int], expected: int) -> None:
    if not ids:
        raise DatasetError(f"{source} holds no examples")
    if len(set(ids)) < 2:
        raise DatasetError(
            f"{source}: all {len(ids)} examples have the same label; {expected} classes are needed"
        )


def _shuffled(texts: list[str], ids: list[int], seed: int) -> tuple[list[str], np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(texts))
    return [texts[i] for i in order], np.asarray(ids, dtype=np.int64)[order]


def _shuffled_split(
    name: str, labels: tuple[str, ...], texts: list[str], ids: list[int], train_size: int, seed: int
) -> TextDataset:
    shuffled_texts, shuffled_ids = _shuffled(texts, ids, seed)
    return TextDataset(
        name=name,
        labels=labels,
        train_texts=shuffled_texts[:train_size],
        train_labels=shuffled_ids[:train_size],
        validation_texts=shuffled_texts[train_size:],
        validation_labels=shuffled_ids[train_size:],
    )
