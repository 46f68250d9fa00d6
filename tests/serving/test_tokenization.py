"""TokenEncoder gives exactly the ids of the tokenizer's own truncation and padding, on either path."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel

from serving.tokenization import TokenEncoder

WORDS = ["[PAD]", "[UNK]", "[CLS]", "the", "cat", "sat", "on", "mat", ",", "!", "é"]
LENGTH = 6


def tokenizer(truncate_from: str, pad_side: str, *, special_tokens: bool = False) -> Tokenizer:
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    if special_tokens:
        tok.post_processor = processors.TemplateProcessing(single="[CLS] $A", special_tokens=[("[CLS]", 2)])
    tok.enable_truncation(max_length=LENGTH, direction=truncate_from)
    tok.enable_padding(direction=pad_side, pad_id=0, pad_token="[PAD]", length=LENGTH)
    return tok


def own_ids(tok: Tokenizer, texts: list[str]) -> np.ndarray:
    return np.array([e.ids for e in tok.encode_batch(texts)], dtype=np.int32).reshape(len(texts), LENGTH)


texts = st.lists(
    st.lists(
        st.sampled_from(["the", "Cat", "sat", "ON", "mat", ",", "!", "dog", "É", " ", "ﬁ"]), max_size=12
    ).map(" ".join),
    min_size=1,
    max_size=5,
)


@pytest.mark.parametrize("pad_side", ["right", "left"])
@pytest.mark.parametrize("truncate_from", ["right", "left"])
@settings(max_examples=60, deadline=None)
@given(batch=texts)
def test_ids_equal_the_tokenizers_own_padding(truncate_from: str, pad_side: str, batch: list[str]) -> None:
    tok = tokenizer(truncate_from, pad_side)
    encoder = TokenEncoder(tok)
    assert encoder.pads_itself
    ids = encoder.encode(batch)
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(ids, own_ids(tok, batch))


def test_the_tokenizer_itself_is_left_as_it_was() -> None:
    tok = tokenizer("left", "right")
    TokenEncoder(tok).encode(["the cat sat on the mat , the cat sat !"])
    assert tok.padding is not None and tok.padding["length"] == LENGTH
    assert tok.truncation is not None and tok.truncation["max_length"] == LENGTH


def test_long_texts_keep_the_end_or_the_start_as_the_tokenizer_truncates() -> None:
    text = "the cat sat on the mat , the cat !"  # 10 tokens, LENGTH is 6
    kept_end = TokenEncoder(tokenizer("left", "right")).encode([text])[0].tolist()
    kept_start = TokenEncoder(tokenizer("right", "right")).encode([text])[0].tolist()
    assert kept_end == [WORDS.index(w) for w in ["the", "mat", ",", "the", "cat", "!"]]
    assert kept_start == [WORDS.index(w) for w in ["the", "cat", "sat", "on", "the", "mat"]]


def test_short_texts_are_padded_on_the_tokenizers_side() -> None:
    cat = WORDS.index("cat")
    assert TokenEncoder(tokenizer("left", "right")).encode(["cat", ""]).tolist() == [
        [cat, 0, 0, 0, 0, 0],
        [0] * 6,
    ]
    assert TokenEncoder(tokenizer("left", "left")).encode(["cat"]).tolist() == [[0, 0, 0, 0, 0, cat]]


@settings(max_examples=30, deadline=None)
@given(batch=texts)
def test_a_tokenizer_with_special_tokens_keeps_its_own_path(batch: list[str]) -> None:
    tok = tokenizer("left", "right", special_tokens=True)
    encoder = TokenEncoder(tok)
    assert not encoder.pads_itself
    ids = encoder.encode(batch)
    np.testing.assert_array_equal(ids, own_ids(tok, batch))
    assert (ids[:, 0] == WORDS.index("[CLS]")).all()


def test_the_trained_tokenizers_take_the_fast_path(tiny_model_repository: Path) -> None:
    path = tiny_model_repository / "tokenizers" / "sarcasm" / "tokenizer.json"
    tok = Tokenizer.from_file(str(path))
    encoder = TokenEncoder(tok)
    assert encoder.pads_itself
    headlines = ["scientists discover the cat sat on the mat", "", "ünïcode ﬁne !" * 40]
    length = tok.padding["length"]
    expected = np.array([e.ids for e in tok.encode_batch(headlines)], dtype=np.int32).reshape(3, length)
    np.testing.assert_array_equal(encoder.encode(headlines), expected)
