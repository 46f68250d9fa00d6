"""Dataset loaders on the real files and on small malformed ones."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from training.datasets import (
    IMDB_LABELS,
    SARCASM_LABELS,
    DatasetError,
    TextDataset,
    load_dataset,
    load_imdb,
    load_sarcasm,
    load_text_label_file,
)


@pytest.fixture(scope="module")
def sarcasm(data_dir: Path) -> TextDataset:
    return load_dataset("sarcasm", data_dir, seed=42)


def test_sarcasm_real_file_has_the_documented_split(sarcasm: TextDataset) -> None:
    assert sarcasm.labels == SARCASM_LABELS
    assert (len(sarcasm.train_texts), len(sarcasm.validation_texts)) == (20_000, 6_709)
    assert len(sarcasm.train_labels) == 20_000 and len(sarcasm.validation_labels) == 6_709
    # 11,724 of the 26,709 headlines are sarcastic.
    assert int(sarcasm.train_labels.sum() + sarcasm.validation_labels.sum()) == 11_724
    assert sarcasm.validation_name == "validation"


def test_sarcasm_split_is_seeded(data_dir: Path, sarcasm: TextDataset) -> None:
    again = load_dataset("sarcasm", data_dir, seed=42)
    other = load_dataset("sarcasm", data_dir, seed=7)
    assert again.train_texts == sarcasm.train_texts
    assert np.array_equal(again.train_labels, sarcasm.train_labels)
    assert other.train_texts != sarcasm.train_texts
    assert sorted(other.train_texts + other.validation_texts) == sorted(
        sarcasm.train_texts + sarcasm.validation_texts
    )


def test_limit_takes_a_proportional_prefix(sarcasm: TextDataset) -> None:
    small = sarcasm.limited(2000)
    assert (len(small.train_texts), len(small.validation_texts)) == (1498, 502)
    assert small.train_texts == sarcasm.train_texts[:1498]
    assert small.validation_texts == sarcasm.validation_texts[:502]
    assert sarcasm.limited(None) is sarcasm
    with pytest.raises(DatasetError, match="--limit"):
        sarcasm.limited(1)


def test_sarcasm_json_lines_matches_json_array(tmp_path: Path) -> None:
    records = [{"headline": f"headline number {i}", "is_sarcastic": i % 2} for i in range(30)]
    array, lines = tmp_path / "array.json", tmp_path / "lines.json"
    array.write_text(json.dumps(records))
    # The original Kaggle file: one object per line, with an extra article_link field.
    lines.write_text("\n".join(json.dumps({"article_link": "https://x", **r}) for r in records) + "\n")
    from_array, from_lines = load_sarcasm(array, seed=1), load_sarcasm(lines, seed=1)
    assert from_array.train_texts == from_lines.train_texts
    assert from_array.validation_texts == from_lines.validation_texts
    assert len(from_array.train_texts) + len(from_array.validation_texts) == 30


@pytest.fixture(scope="module")
def imdb(data_dir: Path) -> TextDataset:
    return load_dataset("imdb", data_dir, seed=42)


def test_imdb_real_archive_gives_the_official_split(imdb: TextDataset) -> None:
    assert imdb.labels == IMDB_LABELS
    assert (len(imdb.train_texts), len(imdb.validation_texts)) == (25_000, 25_000)
    assert int(imdb.train_labels.sum()) == 12_500 and int(imdb.validation_labels.sum()) == 12_500
    assert imdb.validation_name == "test"
    # Shuffled: the archive lists all negatives before all positives.
    assert 0.3 < imdb.train_labels[:1000].mean() < 0.7
    assert all(isinstance(text, str) and text for text in imdb.train_texts[:100])


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
    from_archive, from_folder = load_imdb(packed, seed=3), load_imdb(extracted, seed=3)
    assert len(from_archive.train_texts) == 6 and len(from_archive.validation_texts) == 6
    assert from_archive.train_texts == from_folder.train_texts
    assert from_archive.validation_texts == from_folder.validation_texts
    for text, label in zip(from_archive.train_texts, from_archive.train_labels, strict=True):
        assert text.startswith("train ") and label == (1 if " pos " in text else 0)


def test_csv_with_three_labels_sorts_them(tmp_path: Path) -> None:
    path = tmp_path / "Colours Data.csv"
    rows = ["text,label"] + [
        f'"a {c} thing, number {i}",{c}' for i in range(10) for c in ("red", "blue", "green")
    ]
    path.write_text("\n".join(rows) + "\n")
    dataset = load_dataset(str(path), tmp_path, seed=0)
    assert dataset.name == "colours_data"
    assert dataset.labels == ("blue", "green", "red")
    assert not dataset.is_binary
    assert (len(dataset.train_texts), len(dataset.validation_texts)) == (24, 6)
    for text, label in zip(dataset.train_texts, dataset.train_labels, strict=True):
        assert dataset.labels[label] in text


def test_jsonl_numeric_labels_sort_numerically(tmp_path: Path) -> None:
    path = tmp_path / "stars.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"t{i}", "label": [2, 10, 1][i % 3]}) for i in range(9)))
    dataset = load_text_label_file(path, seed=0)
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
        load_dataset(str(path), tmp_path, seed=0)


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
        load_sarcasm(path, seed=0)


def test_missing_files_name_the_expected_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"not found: .*sarcasm\.json"):
        load_dataset("sarcasm", tmp_path, seed=0)
    with pytest.raises(DatasetError, match=r"aclImdb_v1\.tar\.gz"):
        load_dataset("imdb", tmp_path, seed=0)
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(str(tmp_path / "absent.csv"), tmp_path, seed=0)
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("mnist", tmp_path, seed=0)


def test_corrupt_imdb_archive_raises(tmp_path: Path) -> None:
    (tmp_path / "aclImdb_v1.tar.gz").write_bytes(b"this is not gzip")
    with pytest.raises(DatasetError, match="not a readable"):
        load_imdb(tmp_path, seed=0)
