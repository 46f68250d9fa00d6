"""The Python fast path of TokenEncoder gives HF's ids on any text, and a tokenizer with a part it does not
know is refused and served by HF.

The tokenizers are built by training/tokenizer.py from real headlines, as `seqserve train` builds them.
"""

from __future__ import annotations

import functools
import json
import unicodedata

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel, WordPiece

from serving.fast_tokenizer import (
    LATIN1_LETTERS,
    PLAIN_CHARACTERS,
    PYTHON_ONLY_WHITESPACE,
    UNICODE_PUNCTUATION,
    PythonWordLevel,
)
from serving.sequence import SequencePadding
from serving.tokenization import TokenEncoder
from tests.conftest import DATA_DIR
from training.tokenizer import build_tokenizer

LENGTH = 12  # short enough that many generated texts are cut
HEADLINES = [record["headline"] for record in json.loads((DATA_DIR / "sarcasm" / "sarcasm.json").read_text())]
# Texts on which each refused part changes the ids: a fast path that ignored the part would differ.
DISCRIMINATING = [
    "the cat sat on the mat",
    "don't -- stop!! it's 2024...",
    "a\x00b <p> trump's <br /> u.s. 'quoted'",
    "scientists discover 12 new thes x \x00 y",
    "CAFÉ — café",
]
NOT_ANSWERED = "\x00" + PYTHON_ONLY_WHITESPACE  # NUL: the fast path's separator


@functools.cache
def _built(truncation_side: str) -> str:
    return build_tokenizer(HEADLINES[:3000], 3000, LENGTH, truncation_side).to_str()


def headline_tokenizer(truncation_side: str = "right") -> Tokenizer:
    """A fresh copy (tests change their copy's parts) of the tokenizer built from 3,000 headlines."""
    return Tokenizer.from_str(_built(truncation_side))


def hf_ids(tokenizer: Tokenizer, texts: list[str]) -> np.ndarray:
    """HF's own truncation and padding: the reference every path must equal."""
    return np.array([e.ids for e in tokenizer.encode_batch(texts)], dtype=np.int32).reshape(len(texts), -1)


def fast_rows(tokenizer: Tokenizer, texts: list[str], batch: int = 256) -> list[list[int] | None]:
    """Each text's untruncated ids from the fast path (`batch` texts at a time), None where it does not
    answer."""
    words = PythonWordLevel(tokenizer)
    answered = [text for text in texts if words.answers(text)]
    found = []
    for start in range(0, len(answered), batch):
        flat = words.batch(answered[start : start + batch])
        assert flat is not None
        found += [
            flat.ids[at : at + length].tolist() for at, length in zip(flat.starts, flat.lengths, strict=True)
        ]
    rows = iter(found)
    return [next(rows) if words.answers(text) else None for text in texts]


def untruncated(tokenizer: Tokenizer) -> Tokenizer:
    bare = Tokenizer.from_str(tokenizer.to_str())
    bare.no_padding()
    bare.no_truncation()
    return bare


TOKENIZERS = {side: headline_tokenizer(side) for side in ("right", "left")}
ENCODERS = {side: TokenEncoder(tokenizer) for side, tokenizer in TOKENIZERS.items()}
WORDS = sorted(TOKENIZERS["right"].get_vocab())

# Pieces where the Unicode rules, the <br /> replacement and the whitespace sets matter.
TRICKY = [
    "<br />", "<br>", "<br/>", "<BR />", "<br\t/>", "<br\n\n>", "<br / >", "<br", "/>",
    " ", "  ", "\t", "\n", "\r\n", "\x0b", "\x0c", "\x00", "\x7f",
    "\u00a0", "\u2028", "\u2029", "\u3000", "\u0085", "\u200b", *PYTHON_ONLY_WHITESPACE,
    "ﬁ", "É", "İ", "ß", "ÿ", "Ⅻ", "\uff21\uff22\uff23", "①", "café", "CAFÉ", "cafe\u0301", "É\u0301",
    "“", "”", "\u2018", "\u2019", "—", "\u2013", "…", "¿", "«»", "½", "\u00d7", "µ", "ª", "\u0096",
    "don't", "U.S.", "$5", "#1", "@", "a.b", "...", "!!", "'", '"', "-", "_", "~", "`", "|",
]  # fmt: skip
text_pieces = st.one_of(
    st.sampled_from(TRICKY),
    st.sampled_from(WORDS),
    st.text(max_size=6),  # any Unicode
    st.text(alphabet=st.characters(max_codepoint=127), max_size=6),  # any ASCII, controls too
    st.text(alphabet=PLAIN_CHARACTERS, max_size=6),  # what the fast path answers
)
texts = st.lists(text_pieces, max_size=30).map("".join)
plain_texts = st.lists(
    st.one_of(st.sampled_from(WORDS), st.text(alphabet=PLAIN_CHARACTERS, max_size=6)),
    max_size=30,
).map(" ".join)
batches = st.lists(st.one_of(texts, plain_texts), min_size=1, max_size=8)


def test_the_tokenizers_training_writes_take_the_python_fast_path() -> None:
    for encoder in ENCODERS.values():
        assert encoder.pads_itself
        assert encoder.fast_path_refusal is None


@pytest.mark.parametrize("side", ["right", "left"])
@settings(max_examples=300, deadline=None)
@given(batch=batches, trailing=st.integers(0, 3))
def test_ids_equal_hf_on_any_unicode_text(side: str, batch: list[str], trailing: int) -> None:
    expected = hf_ids(TOKENIZERS[side], batch)
    encoder = ENCODERS[side]
    np.testing.assert_array_equal(encoder.encode(batch, SequencePadding(LENGTH)), expected)
    cut = encoder.encode(batch, SequencePadding(LENGTH, True, trailing))
    np.testing.assert_array_equal(cut, expected[:, : cut.shape[1]])
    assert (expected[:, cut.shape[1] :] == 0).all()


@settings(max_examples=300, deadline=None)
@given(batch=batches)
def test_untruncated_ids_equal_hf_where_the_fast_path_answers(batch: list[str]) -> None:
    tokenizer = TOKENIZERS["right"]
    rows = fast_rows(tokenizer, batch)
    assert PythonWordLevel(tokenizer).batch(batch) is None or None not in rows  # one string for the batch
    for text, ids, encoding in zip(batch, rows, untruncated(tokenizer).encode_batch(batch), strict=True):
        if ids is None:
            assert any(c not in PLAIN_CHARACTERS or c in NOT_ANSWERED for c in text)
        else:
            assert ids == encoding.ids, text


def test_every_plain_character_splits_as_hf_splits_it_and_only_five_go_to_hf() -> None:
    tokenizer = TOKENIZERS["right"]
    characters = list(PLAIN_CHARACTERS)
    batch = [f"the{c}cat {c} x{c}{c}Y{c} <br{c}/> <br{c}>{c} caf{c}É" for c in characters]
    rows = fast_rows(tokenizer, batch)
    encodings = untruncated(tokenizer).encode_batch(batch)
    assert [c for c, ids in zip(characters, rows, strict=True) if ids is None] == list(NOT_ANSWERED)
    for c, ids, encoding in zip(characters, rows, encodings, strict=True):
        if ids is not None:
            assert ids == encoding.ids, repr(c)


@pytest.mark.parametrize("c", LATIN1_LETTERS + UNICODE_PUNCTUATION)
def test_the_plain_characters_beyond_ascii_are_what_the_fast_path_takes_them_for(c: str) -> None:
    """NFC/NFKC-stable starters whose lowercase Python and HF agree on, letters or HF punctuation."""
    assert unicodedata.combining(c) == 0
    assert unicodedata.normalize("NFKC", c) == unicodedata.normalize("NFC", c) == c
    assert TOKENIZERS["right"].normalizer.normalize_str(c) == c.lower()
    assert c.lower() in PLAIN_CHARACTERS and not c.isspace()
    category = unicodedata.category(c)
    assert category[0] == "L" if c in LATIN1_LETTERS else category in ("Pd", "Pi", "Pf")
    assert [token for token, _span in TOKENIZERS["right"].pre_tokenizer.pre_tokenize_str(f"a{c}b")] == (
        ["a" + c + "b"] if c in LATIN1_LETTERS else ["a", c, "b"]
    )


def test_a_batch_mixing_ascii_and_other_texts_keeps_each_row_in_place() -> None:
    batch = ["the cat", "café au lait", "", "x\x1cy", "THE CAT<br />sat", "ﬁne\u00a0day", "a\x00b", "İ"]
    for side, encoder in ENCODERS.items():
        np.testing.assert_array_equal(
            encoder.encode(batch, SequencePadding(LENGTH)), hf_ids(TOKENIZERS[side], batch)
        )
    assert ENCODERS["right"].encode([], SequencePadding(LENGTH, True)).shape == (0, 1)


def _with(**parts: object) -> Tokenizer:
    tokenizer = headline_tokenizer()
    for name, part in parts.items():
        setattr(tokenizer, name, part)
    return tokenizer


def _word_piece() -> Tokenizer:
    tokenizer = headline_tokenizer()
    vocab = {**tokenizer.get_vocab(), "##s": tokenizer.get_vocab_size()}
    tokenizer.model = WordPiece(vocab, unk_token="[UNK]")
    return tokenizer


def _added_token() -> Tokenizer:
    tokenizer = headline_tokenizer()
    tokenizer.add_tokens(["cat sat"])
    return tokenizer


KNOWN_NORMALIZER = [
    normalizers.NFKC(),
    normalizers.Replace(Regex(r"<br\s*/?>"), " "),
    normalizers.Lowercase(),
]
KNOWN_SPLIT = [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
REFUSED = {
    "a string Replace": lambda: _with(
        normalizer=normalizers.Sequence([*KNOWN_NORMALIZER, normalizers.Replace("the", "a")])
    ),
    "an unknown Replace regex": lambda: _with(
        normalizer=normalizers.Sequence([*KNOWN_NORMALIZER, normalizers.Replace(Regex(r"\d+"), "0")])
    ),
    "BertNormalizer": lambda: _with(normalizer=normalizers.BertNormalizer(lowercase=True)),
    "NFD": lambda: _with(normalizer=normalizers.Sequence([normalizers.NFD(), *KNOWN_NORMALIZER[1:]])),
    "Whitespace": lambda: _with(pre_tokenizer=pre_tokenizers.Whitespace()),
    "WhitespaceSplit alone": lambda: _with(pre_tokenizer=pre_tokenizers.WhitespaceSplit()),
    "Punctuation removed": lambda: _with(
        pre_tokenizer=pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="removed")]
        )
    ),
    "Digits": lambda: _with(
        pre_tokenizer=pre_tokenizers.Sequence([*KNOWN_SPLIT, pre_tokenizers.Digits(individual_digits=True)])
    ),
    "WordPiece": _word_piece,
    "an added token": _added_token,
}  # fmt: skip


@pytest.mark.parametrize("build", REFUSED.values(), ids=REFUSED.keys())
def test_a_tokenizer_with_an_unknown_part_is_refused_and_served_by_hf(build: object) -> None:
    tokenizer = build()  # type: ignore[operator]
    known = headline_tokenizer()
    # the part matters on these texts: ignoring it would give other ids
    assert not np.array_equal(hf_ids(tokenizer, DISCRIMINATING), hf_ids(known, DISCRIMINATING))
    encoder = TokenEncoder(tokenizer)
    assert encoder.pads_itself
    assert encoder.fast_path_refusal
    np.testing.assert_array_equal(
        encoder.encode(DISCRIMINATING, SequencePadding(LENGTH)), hf_ids(tokenizer, DISCRIMINATING)
    )


def test_an_unknown_word_token_missing_from_the_vocabulary_is_refused() -> None:
    tokenizer = headline_tokenizer()
    tokenizer.model = WordLevel(tokenizer.get_vocab(), unk_token="<unk>")
    assert "<unk>" in (TokenEncoder(tokenizer).fast_path_refusal or "")


ACCEPTED = {
    "no normalizer": lambda: _with(normalizer=None),
    "no lowercase": lambda: _with(normalizer=normalizers.Sequence(KNOWN_NORMALIZER[:2])),
    "lowercase before the replacement": lambda: _with(
        normalizer=normalizers.Sequence([normalizers.NFC(), KNOWN_NORMALIZER[2], KNOWN_NORMALIZER[1]])
    ),
    "punctuation split first": lambda: _with(pre_tokenizer=pre_tokenizers.Sequence(KNOWN_SPLIT[::-1])),
}


ACCEPTED_TOKENIZERS = {name: build() for name, build in ACCEPTED.items()}


@pytest.mark.parametrize("name", ACCEPTED)
@settings(max_examples=60, deadline=None)
@given(
    batch=st.lists(
        st.one_of(st.sampled_from([*DISCRIMINATING, "THE <BR /> Cat", "<Br>x"]), texts),
        min_size=1,
        max_size=6,
    )
)
def test_other_combinations_of_known_parts_take_the_fast_path_and_equal_hf(
    name: str, batch: list[str]
) -> None:
    tokenizer = ACCEPTED_TOKENIZERS[name]
    encoder = TokenEncoder(tokenizer)
    assert encoder.fast_path_refusal is None
    np.testing.assert_array_equal(encoder.encode(batch, SequencePadding(LENGTH)), hf_ids(tokenizer, batch))
