"""Dataset loaders: the sarcasm headlines, IMDB reviews and any user `text,label` file.

Every loader returns the same `TextDataset` with three splits, made deterministically from a seed, so
the rest of the pipeline never knows where the texts came from:
- test: the held-out part a dataset is known by (IMDB's official 25,000 test reviews, sarcasm's 6,709
  headlines outside the course's 20,000), read once per run, for the report;
- validation: a stratified share of the training data, where every choice (the epoch, the seed) is made;
- train: the rest.
"""

from __future__ import annotations

import csv
import json
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

SARCASM_LABELS = ("not_sarcastic", "sarcastic")
IMDB_LABELS = ("negative", "positive")
# The sarcasm split used throughout the TensorFlow course: 20,000 of 26,709 headlines for training.
SARCASM_TRAIN_SIZE = 20_000
SARCASM_FULL_SIZE = 26_709
# A user file has no test split of its own: this share of it becomes one.
CUSTOM_TEST_FRACTION = 0.2
DATASET_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_IMDB_MEMBER = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg)/(\d+)_\d+\.txt$")


class DatasetError(Exception):
    """A dataset cannot be used as given; the message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class Split:
    texts: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)

    def head(self, count: int) -> Split:
        return Split(self.texts[:count], self.labels[:count])

    def majority_rate(self) -> float:
        """Accuracy of always answering the most frequent class: the floor a model must clear."""
        return float(np.bincount(self.labels).max() / len(self.labels)) if len(self.labels) else 0.0


@dataclass(frozen=True)
class TextDataset:
    """Texts with integer class ids (index into `labels`), already split into train, validation, test."""

    name: str
    labels: tuple[str, ...]
    train: Split
    validation: Split
    test: Split
    split_seed: int
    validation_fraction: float

    @property
    def is_binary(self) -> bool:
        return len(self.labels) == 2

    def limited(self, limit: int | None) -> TextDataset:
        """The first `limit` examples, shared between the three splits in proportion to their sizes."""
        splits = (self.train, self.validation, self.test)
        total = sum(len(split) for split in splits)
        if limit is None or limit >= total:
            return self
        if limit < len(splits):
            raise DatasetError(f"--limit {limit} leaves no example for one of the splits; use at least 3")
        sizes = [max(1, round(limit * len(split) / total)) for split in splits]
        sizes[0] = limit - sizes[1] - sizes[2]
        train, validation, test = (split.head(size) for split, size in zip(splits, sizes, strict=True))
        return replace(self, train=train, validation=validation, test=test)


def _with_validation(
    name: str,
    labels: tuple[str, ...],
    pool: Split,
    test: Split,
    seed: int,
    validation_fraction: float,
) -> TextDataset:
    """Carves a stratified validation split from the shuffled training pool: each class gives the
    same share, so validation has the pool's class balance."""
    if not 0 < validation_fraction < 1:
        raise DatasetError(f"validation fraction {validation_fraction} must lie strictly between 0 and 1")
    rng = np.random.default_rng(seed)
    held = np.zeros(len(pool), dtype=bool)
    for label in np.unique(pool.labels):
        members = np.flatnonzero(pool.labels == label)
        held[rng.permutation(members)[: round(len(members) * validation_fraction)]] = True
    if held.all() or not held.any():
        raise DatasetError(
            f"{name}: a validation fraction of {validation_fraction} of {len(pool)} training examples "
            "leaves one split empty; use more data or another fraction"
        )
    take = lambda mask: Split([pool.texts[i] for i in np.flatnonzero(mask)], pool.labels[mask])  # noqa: E731
    return TextDataset(
        name=name,
        labels=labels,
        train=take(~held),
        validation=take(held),
        test=test,
        split_seed=seed,
        validation_fraction=validation_fraction,
    )


def load_dataset(
    spec: str,
    data_dir: Path,
    seed: int,
    validation_fraction: float,
    test_fraction: float = CUSTOM_TEST_FRACTION,
) -> TextDataset:
    """`spec` is "sarcasm", "imdb" or the path of a CSV/JSONL file with `text` and `label` columns.

    `test_fraction` applies to user files only: the two known datasets keep their published test sets.
    """
    if spec == "sarcasm":
        return load_sarcasm(data_dir / "sarcasm" / "sarcasm.json", seed, validation_fraction)
    if spec == "imdb":
        return load_imdb(data_dir / "imdb", seed, validation_fraction)
    path = Path(spec)
    if path.suffix.lower() in (".csv", ".jsonl", ".json") or path.exists():
        return load_text_label_file(path, seed, validation_fraction, test_fraction)
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


def load_sarcasm(path: Path, seed: int, validation_fraction: float) -> TextDataset:
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
    return _split_off_test("sarcasm", SARCASM_LABELS, texts, ids, train_size, seed, validation_fraction)


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


def load_imdb(directory: Path, seed: int, validation_fraction: float) -> TextDataset:
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
    pool, test = (_shuffled(*splits[split], seed) for split in ("train", "test"))
    return _with_validation("imdb", IMDB_LABELS, pool, test, seed, validation_fraction)


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


def load_text_label_file(
    path: Path, seed: int, validation_fraction: float, test_fraction: float
) -> TextDataset:
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
    if not 0 < test_fraction < 1:
        raise DatasetError(f"test fraction {test_fraction} must lie strictly between 0 and 1")
    train_size = len(texts) - max(1, round(len(texts) * test_fraction))
    if train_size < 2:
        raise DatasetError(
            f"{path} has {len(texts)} row(s); at least 3 are needed for train, validation and test splits"
        )
    name = custom_dataset_name(path)
    return _split_off_test(name, tuple(labels), texts, ids, train_size, seed, validation_fraction)


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


def _shuffled(texts: list[str], ids: list[int], seed: int) -> Split:
    order = np.random.default_rng(seed).permutation(len(texts))
    return Split([texts[i] for i in order], np.asarray(ids, dtype=np.int64)[order])


def _split_off_test(
    name: str,
    labels: tuple[str, ...],
    texts: list[str],
    ids: list[int],
    train_size: int,
    seed: int,
    validation_fraction: float,
) -> TextDataset:
    """Shuffles, keeps the first `train_size` as the training pool and the rest as the test split."""
    shuffled = _shuffled(texts, ids, seed)
    pool = Split(shuffled.texts[:train_size], shuffled.labels[:train_size])
    test = Split(shuffled.texts[train_size:], shuffled.labels[train_size:])
    return _with_validation(name, labels, pool, test, seed, validation_fraction)
