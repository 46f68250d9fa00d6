"""The shared tokenizer: vocabulary layout, text handling stored in the file, reuse across runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from training.tokenizer import (
    PAD_ID,
    UNK_ID,
    TokenizerMismatchError,
    build_tokenizer,
    encode,
    load_or_build,
    tokenizer_path,
)

TEXTS = [
    "The cat sat on the mat.",
    "THE DOG sat, then the dog ran!",
    "a cat and a dog<br />and a bird",
]


def test_vocabulary_is_pad_unk_then_words_by_frequency_then_alphabet() -> None:
    tokenizer = build_tokenizer(TEXTS, vocab_size=8, max_length=10, truncation_side="right")
    vocab = tokenizer.get_vocab()
    assert tokenizer.get_vocab_size() == 8
    assert vocab["[PAD]"] == PAD_ID == 0 and vocab["[UNK]"] == UNK_ID == 1
    # the: 4, a: 3, dog: 3, and: 2, cat: 2, sat: 2 -> ties in alphabetical order.
    by_id = sorted(vocab, key=vocab.get)
    assert by_id == ["[PAD]", "[UNK]", "the", "a", "dog", "and", "cat", "sat"]


def test_lowercases_splits_punctuation_and_drops_line_break_markup() -> None:
    tokenizer = build_tokenizer(TEXTS, vocab_size=100, max_length=12, truncation_side="right")
    encoding = tokenizer.encode("The DOG, sat!<br/>bird")
    assert encoding.tokens == ["the", "dog", ",", "sat", "!", "bird"] + ["[PAD]"] * 6
    assert tokenizer.encode("zebra").ids[0] == UNK_ID


def test_pads_after_and_truncates_on_the_configured_side() -> None:
    texts = ["one two three four five six"]
    right = build_tokenizer(texts, vocab_size=20, max_length=4, truncation_side="right")
    left = build_tokenizer(texts, vocab_size=20, max_length=4, truncation_side="left")
    assert right.encode(texts[0]).tokens == ["one", "two", "three", "four"]
    assert left.encode(texts[0]).tokens == ["three", "four", "five", "six"]
    assert right.encode("two one").tokens == ["two", "one", "[PAD]", "[PAD]"]


def test_training_ids_equal_a_fresh_tokenizer_from_file(tmp_path: Path, data_dir: Path) -> None:
    texts = (data_dir / "sarcasm" / "sarcasm.json").read_text().splitlines()[1:301]
    stored = load_or_build(tmp_path, "demo", texts, vocab_size=500, max_length=30, truncation_side="right")
    ids = encode(stored.tokenizer, texts)
    fresh = Tokenizer.from_file(str(tokenizer_path(tmp_path, "demo")))
    expected = np.array([e.ids for e in fresh.encode_batch(texts)], dtype=np.int32)
    assert ids.dtype == np.int32 and ids.shape == (300, 30)
    assert np.array_equal(ids, expected)
    assert stored.max_length == 30 and stored.vocab_size == 500


def test_existing_tokenizer_is_reused_untouched(tmp_path: Path) -> None:
    first = load_or_build(tmp_path, "demo", TEXTS, vocab_size=50, max_length=10, truncation_side="right")
    before = first.path.read_bytes()
    second = load_or_build(
        tmp_path,
        "demo",
        ["completely different words"],
        vocab_size=50,
        max_length=10,
        truncation_side="right",
    )
    assert not first.reused and second.reused
    assert second.path.read_bytes() == before and second.sha256 == first.sha256
    assert second.tokenizer.get_vocab() == first.tokenizer.get_vocab()
    with pytest.raises(TokenizerMismatchError, match="max_length 10"):
        load_or_build(tmp_path, "demo", TEXTS, vocab_size=50, max_length=20, truncation_side="right")


def test_rejects_a_vocabulary_without_room_for_words() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        build_tokenizer(TEXTS, vocab_size=2, max_length=5, truncation_side="right")
