"""Request texts from the real sarcasm file, a file of lines and a folder inside a tar archive."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from seqserve.loadtest.texts import TextCycle, TextSourceError, load_texts
from tests.conftest import DATA_DIR


def test_sarcasm_headlines_load_shuffled_and_seeded():
    path = DATA_DIR / "sarcasm" / "sarcasm.json"
    headlines = {record["headline"] for record in json.loads(path.read_text())}
    texts = load_texts(path, limit=500, seed=1)
    assert len(texts) == 500 and set(texts) <= headlines
    assert load_texts(path, limit=500, seed=1) == texts
    assert load_texts(path, limit=500, seed=2) != texts


def test_lines_file_skips_blank_lines(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("first\n\n  \nsecond\n")
    assert sorted(load_texts(path)) == ["first", "second"]
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(TextSourceError):
        load_texts(tmp_path / "empty.txt")
    (tmp_path / "bad.json").write_text('[{"label": 1}]')
    with pytest.raises(TextSourceError, match="headline"):
        load_texts(tmp_path / "bad.json")


def test_a_folder_inside_a_tar_archive_gives_its_txt_files(tmp_path):
    archive = tmp_path / "reviews.tar.gz"
    files = {"r/test/pos/1.txt": "great<br />film", "r/test/neg/2.txt": "dull", "r/train/pos/3.txt": "no",
             "r/test/README": "not a text", "r/test/neg/4.txt": "  "}  # fmt: skip
    with tarfile.open(archive, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    assert sorted(load_texts(archive / "r" / "test")) == ["dull", "great<br />film"]
    assert len(load_texts(archive)) == 3
    with pytest.raises(TextSourceError):
        load_texts(archive / "r" / "none")


def test_cycle_hands_out_consecutive_batches_and_wraps():
    cycle = TextCycle(["a", "b", "c"], batch=2)
    assert [cycle.take() for _ in range(3)] == [["a", "b"], ["c", "a"], ["b", "c"]]
