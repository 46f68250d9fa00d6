"""Dataset loaders on the real files and on small malformed ones."""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from training.datasets import (
    IMDB_LABELS,
    SARCASM_LABELS,
    DatasetError,
    Split,
    TextDataset,
    load_dataset,
    load_imdb,
    load_sarcasm,
    load_text_label_file,
)

VALIDATION = 0.1


@pytest.fixture(scope="module")
def sarcasm(data_dir: Path) -> TextDataset:
    return load_dataset("sarcasm", data_dir, seed=42, validation_fraction=VALIDATION)


def _splits(dataset: TextDataset) -> tuple[Split, Split, Split]:
    return dataset.train, dataset.validation, dataset.test


def _assert_stratified(dataset: TextDataset) -> None:
    """Validation's class balance within 1 point of train's."""
    assert abs(dataset.validation.labels.mean() - dataset.train.labels.mean()) < 0.01


def test_sarcasm_real_file_has_the_documented_split(sarcasm: TextDataset) -> None:
    assert sarcasm.labels == SARCASM_LABELS
    # The course's 20,000 training headlines, 10 % of them held out for validation; 6,709 test.
    assert [len(split) for split in _splits(sarcasm)] == [18_000, 2_000, 6_709]
    assert [len(split.labels) for split in _splits(sarcasm)] == [18_000, 2_000, 6_709]
    # 11,724 of the 26,709 headlines are sarcastic.
    assert sum(int(split.labels.sum()) for split in _splits(sarcasm)) == 11_724
    assert (sarcasm.split_seed, sarcasm.validation_fraction) == (42, VALIDATION)
    _assert_stratified(sarcasm)


def test_sarcasm_splits_partition_the_file(data_dir: Path, sarcasm: TextDataset) -> None:
    """Every headline lands in exactly one split (the file repeats a few headlines: as often as there)."""
    source = json.loads((data_dir / "sarcasm" / "sarcasm.json").read_text())
    in_splits = sum((Counter(split.texts) for split in _splits(sarcasm)), Counter())
    assert in_splits == Counter(record["headline"] for record in source)


def test_sarcasm_split_is_seeded(data_dir: Path, sarcasm: TextDataset) -> None:
    again = load_dataset("sarcasm", data_dir, seed=42, validation_fraction=VALIDATION)
    other = load_dataset("sarcasm", data_dir, seed=7, validation_fraction=VALIDATION)
    for mine, theirs in zip(_splits(again), _splits(sarcasm), strict=True):
        assert mine.texts == theirs.texts
        assert np.array_equal(mine.labels, theirs.labels)
    assert other.validation.texts != sarcasm.validation.texts
    everything = lambda d: sorted(t for split in _splits(d) for t in split.texts)  # noqa: E731
    assert everything(other) == everything(sarcasm)


def test_validation_is_stratified_on_a_skewed_file(tmp_path: Path) -> None:
    path = tmp_path / "skewed.csv"
    path.write_text("text,label\n" + "".join(f"text {i},{int(i % 10 == 0)}\n" for i in range(1000)))
    dataset = load_dataset(str(path), tmp_path, seed=3, validation_fraction=0.25, test_fraction=0.2)
    assert [len(split) for split in _splits(dataset)] == [600, 200, 200]
    texts = [set(split.texts) for split in _splits(dataset)]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    # 10 % positives in the pool: validation takes exactly its share of each class.
    pool_rate = (dataset.train.labels.sum() + dataset.validation.labels.sum()) / 800
    assert abs(dataset.validation.labels.mean() - pool_rate) < 0.01
    assert abs(dataset.train.labels.mean() - pool_rate) < 0.01


def test_limit_takes_a_proportional_prefix(sarcasm: TextDataset) -> None:
    small = sarcasm.limited(2000)
    assert [len(split) for split in _splits(small)] == [1348, 150, 502]
    for part, whole in zip(_splits(small), _splits(sarcasm), strict=True):
        assert part.texts == whole.texts[: len(part)]
    assert sarcasm.limited(None) is sarcasm
    with pytest.raises(DatasetError, match="--limit"):
        sarcasm.limited(2)


def test_sarcasm_json_lines_matches_json_array(tmp_path: Path) -> None:
    records = [{"headline": f"headline number {i}", "is_sarcastic": i % 2} for i in range(30)]
    array, lines = tmp_path / "array.json", tmp_path / "lines.json"
    array.write_text(json.dumps(records))
    # The original Kaggle file: one object per line, with an extra article_link field.
    lines.write_text("\n".join(json.dumps({"article_link": "https://x", **r}) for r in records) + "\n")
    from_array = load_sarcasm(array, seed=1, validation_fraction=VALIDATION)
    from_lines = load_sarcasm(lines, seed=1, validation_fraction=VALIDATION)
    for mine, theirs in zip(_splits(from_array), _splits(from_lines), strict=True):
        assert mine.texts == theirs.texts
    assert sum(len(split) for split in _splits(from_array)) == 30


@pytest.fixture(scope="module")
def imdb(data_dir: Path) -> TextDataset:
    return load_dataset("imdb", data_dir, seed=42, validation_fraction=VALIDATION)


def test_imdb_real_archive_gives_the_official_split(imdb: TextDataset) -> None:
    assert imdb.labels == IMDB_LABELS
    # 2,500 of the 25,000 training reviews validate; the official 25,000 test reviews test.
    assert [len(split) for split in _splits(imdb)] == [22_500, 2_500, 25_000]
    assert [int(split.labels.sum()) for split in _splits(imdb)] == [11_250, 1_250, 12_500]
    # Shuffled: the archive lists all negatives before all positives.
    assert 0.3 < imdb.train.labels[:1000].mean() < 0.7
    assert all(isinstance(text, str) and text for text in imdb.train.texts[:100])
    _assert_stratified(imdb)


def _write_tiny_imdb(root: Path) -> dict[str, bytes]:
    files = {
        f"aclImdb/{split}/{polarity}/{number}_{rating}.txt": f"{split} {polarity} review {number}".encode()
        for split in ("train", "test")
        for polarity, rating in (("pos", 9), ("neg", 2))
        for number in range(3)
    }
    files["aclImdb/README"] = b"not a review"
    with tarfile.open(root / "aclImdb_v1.tar.gz", "w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return files


def test_imdb_archive_and_extracted_folder_load_identically(tmp_path: Path) -> None:
    packed, extracted = tmp_path / "packed", tmp_path / "extracted"
    packed.mkdir()
    extracted.mkdir()
    files = _write_tiny_imdb(packed)
    for name, content in files.items():
        (extracted / name).parent.mkdir(parents=True, exist_ok=True)
        (extracted / name).write_bytes(content)
    # One review of each class validates.
    from_archive = load_imdb(packed, seed=3, validation_fraction=0.34)
    from_folder = load_imdb(extracted, seed=3, validation_fraction=0.34)
    assert [len(split) for split in _splits(from_archive)] == [4, 2, 6]
    for mine, theirs in zip(_splits(from_archive), _splits(from_folder), strict=True):
        assert mine.texts == theirs.texts
    for split in (from_archive.train, from_archive.validation):
        for text, label in zip(split.texts, split.labels, strict=True):
            assert text.startswith("train ") and label == (1 if " pos " in text else 0)


def test_csv_with_three_labels_sorts_them(tmp_path: Path) -> None:
    path = tmp_path / "Colours Data.csv"
    rows = ["text,label"] + [
        f'"a {c} thing, number {i}",{c}' for i in range(10) for c in ("red", "blue", "green")
    ]
    path.write_text("\n".join(rows) + "\n")
    dataset = load_dataset(str(path), tmp_path, seed=0, validation_fraction=VALIDATION)
    assert dataset.name == "colours_data"
    assert dataset.labels == ("blue", "green", "red")
    assert not dataset.is_binary
    # 6 of 30 rows test; of the other 24, 10 % of each colour (rounded: one each) validate.
    assert [len(split) for split in _splits(dataset)] == [21, 3, 6]
    for split in _splits(dataset):
        for text, label in zip(split.texts, split.labels, strict=True):
            assert dataset.labels[label] in text


def test_jsonl_numeric_labels_sort_numerically(tmp_path: Path) -> None:
    path = tmp_path / "stars.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"t{i}", "label": [2, 10, 1][i % 3]}) for i in range(9)))
    dataset = load_text_label_file(path, seed=0, validation_fraction=0.2, test_fraction=0.2)
    assert dataset.labels == ("1", "2", "10")


@pytest.mark.parametrize(
    ("file_name", "content", "message"),
    [
        ("empty.csv", "", "empty"),
        ("header_only.csv", "text,label\n", "no rows"),
        ("no_label.csv", "text,category\nhello,a\nbye,b\n", "no column label"),
        ("one_class.csv", "text,label\na,x\nb,x\nc,x\n", "two distinct labels"),
        ("one_row.jsonl", '{"text": "a", "label": 1}\n', "two distinct labels"),
        ("broken.jsonl", '{"text": "a", "label": 1}\n{"text": \n', "not valid JSON"),
    ],
)
def test_malformed_user_files_raise_actionable_errors(
    tmp_path: Path, file_name: str, content: str, message: str
) -> None:
    path = tmp_path / file_name
    path.write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_dataset(str(path), tmp_path, seed=0, validation_fraction=VALIDATION)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[]", "no records"),
        ('[{"headline": "a", "is_sarcastic": 1}, {"headline": "b", "is_sarcastic": 1}]', "same label"),
        ('[{"headline": "a"}]', "lacks is_sarcastic"),
        ('[{"headline": "a", "is_sarcastic": 2}]', "expected 0 or 1"),
    ],
)
def test_malformed_sarcasm_files_raise(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "sarcasm.json"
    path.write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_sarcasm(path, seed=0, validation_fraction=VALIDATION)


def test_missing_files_name_the_expected_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"not found: .*sarcasm\.json"):
        load_dataset("sarcasm", tmp_path, seed=0, validation_fraction=VALIDATION)
    with pytest.raises(DatasetError, match=r"aclImdb_v1\.tar\.gz"):
        load_dataset("imdb", tmp_path, seed=0, validation_fraction=VALIDATION)
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(str(tmp_path / "absent.csv"), tmp_path, seed=0, validation_fraction=VALIDATION)
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("mnist", tmp_path, seed=0, validation_fraction=VALIDATION)


def test_corrupt_imdb_archive_raises(tmp_path: Path) -> None:
    (tmp_path / "aclImdb_v1.tar.gz").write_bytes(b"this is not gzip")
    with pytest.raises(DatasetError, match="not a readable"):
        load_imdb(tmp_path, seed=0, validation_fraction=VALIDATION)
