"""TokenEncoder gives exactly the ids of the tokenizer's own truncation and padding, on either path, and
pads a variable-length model's batch only as far as its `SequencePadding` asks."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel

from serving.sequence import SequencePadding
from serving.tokenization import TokenEncoder

WORDS = ["[PAD]", "[UNK]", "[CLS]", "the", "cat", "sat", "on", "mat", ",", "!", "é"]
LENGTH = 6
FULL = SequencePadding(LENGTH)


def tokenizer(
    truncate_from: str, pad_side: str, *, special_tokens: bool = False, pad_id: int = 0
) -> Tokenizer:
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    if special_tokens:
        tok.post_processor = processors.TemplateProcessing(single="[CLS] $A", special_tokens=[("[CLS]", 2)])
    tok.enable_truncation(max_length=LENGTH, direction=truncate_from)
    tok.enable_padding(direction=pad_side, pad_id=pad_id, pad_token=WORDS[pad_id], length=LENGTH)
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
    ids = encoder.encode(batch, FULL)
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(ids, own_ids(tok, batch))


def test_the_tokenizer_itself_is_left_as_it_was() -> None:
    tok = tokenizer("left", "right")
    TokenEncoder(tok).encode(["the cat sat on the mat , the cat sat !"], FULL)
    assert tok.padding is not None and tok.padding["length"] == LENGTH
    assert tok.truncation is not None and tok.truncation["max_length"] == LENGTH


def test_long_texts_keep_the_end_or_the_start_as_the_tokenizer_truncates() -> None:
    text = "the cat sat on the mat , the cat !"  # 10 tokens, LENGTH is 6
    kept_end = TokenEncoder(tokenizer("left", "right")).encode([text], FULL)[0].tolist()
    kept_start = TokenEncoder(tokenizer("right", "right")).encode([text], FULL)[0].tolist()
    assert kept_end == [WORDS.index(w) for w in ["the", "mat", ",", "the", "cat", "!"]]
    assert kept_start == [WORDS.index(w) for w in ["the", "cat", "sat", "on", "the", "mat"]]


def test_short_texts_are_padded_on_the_tokenizers_side() -> None:
    cat = WORDS.index("cat")
    assert TokenEncoder(tokenizer("left", "right")).encode(["cat", ""], FULL).tolist() == [
        [cat, 0, 0, 0, 0, 0],
        [0] * 6,
    ]
    assert TokenEncoder(tokenizer("left", "left")).encode(["cat"], FULL).tolist() == [[0, 0, 0, 0, 0, cat]]


@settings(max_examples=30, deadline=None)
@given(batch=texts)
def test_a_tokenizer_with_special_tokens_keeps_its_own_path(batch: list[str]) -> None:
    tok = tokenizer("left", "right", special_tokens=True)
    encoder = TokenEncoder(tok)
    assert not encoder.pads_itself
    ids = encoder.encode(batch, FULL)
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
    np.testing.assert_array_equal(encoder.encode(headlines, SequencePadding(length)), expected)


@pytest.mark.parametrize("truncate_from", ["right", "left"])
@settings(max_examples=60, deadline=None)
@given(batch=texts, trailing=st.integers(0, LENGTH + 1))
def test_a_variable_length_batch_is_the_full_rows_cut_after_its_longest_text_plus_the_trailing_padding(
    truncate_from: str, batch: list[str], trailing: int
) -> None:
    tok = tokenizer(truncate_from, "right")
    full = own_ids(tok, batch)
    longest = int((full != 0).sum(axis=1).max())  # the test words hold no padding id
    width = max(1, min(LENGTH, longest + trailing))
    ids = TokenEncoder(tok).encode(batch, SequencePadding(LENGTH, True, trailing))
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(ids, full[:, :width])
    assert (full[:, width:] == 0).all()


def test_empty_texts_alone_get_one_padding_column_and_a_conv_gets_its_trailing_padding() -> None:
    encoder = TokenEncoder(tokenizer("left", "right"))
    assert encoder.encode(["", ""], SequencePadding(LENGTH, True)).tolist() == [[0], [0]]
    cat = WORDS.index("cat")
    assert encoder.encode(["cat", ""], SequencePadding(LENGTH, True, 2)).tolist() == [[cat, 0, 0], [0, 0, 0]]
    assert encoder.encode(["cat"], SequencePadding(LENGTH, True, 9)).shape == (1, LENGTH)


@pytest.mark.parametrize(
    "tok",
    [
        tokenizer("left", "left"),  # the padding would be cut before the text
        tokenizer("left", "right", pad_id=WORDS.index("[CLS]")),  # the graph ignores id 0 only
        tokenizer("left", "right", special_tokens=True),  # the tokenizer pads itself
    ],
    ids=["left padding", "padding id not 0", "special tokens"],
)
def test_tokenizers_whose_padding_cannot_be_cut_give_a_variable_length_model_full_rows(
    tok: Tokenizer,
) -> None:
    batch = ["cat", "the mat !", ""]
    ids = TokenEncoder(tok).encode(batch, SequencePadding(LENGTH, True, 1))
    np.testing.assert_array_equal(ids, own_ids(tok, batch))


def test_the_encoder_knows_the_one_length_of_a_fast_path_tokenizer() -> None:
    assert TokenEncoder(tokenizer("left", "right")).length == LENGTH
    assert TokenEncoder(tokenizer("left", "right", special_tokens=True)).length is None
