"""The ids of a word-level tokenizer, computed in Python for plain texts: exact by construction.

HF `tokenizers` spends most of a headline's time building an `Encoding` (tokens, offsets, masks) that
serving never reads. For the tokenizers training writes (NFKC, `<br />` -> space, lowercase; split on
whitespace, each punctuation character a token of its own; a word-level vocabulary), a plain text
needs none of the Unicode rules: ASCII, the Latin-1 letters and six common dashes and quotes
(PLAIN_CHARACTERS) are left as they are by NFKC in any context, and their whitespace and punctuation
are the short lists below. So those texts are split with `str.lower`, a `str.replace` that puts spaces
around each punctuation character present, `str.split`, and one dict lookup per token instead.

The fast path is built only from a tokenizer whose every component (model, normalizers, pre-tokenizers,
added tokens) it knows exactly, read from the tokenizer's JSON; anything else raises `UnknownComponent`
and HF serves. A text with any other character (or one of the four ASCII separators that Python's
`str.split` takes for whitespace and HF does not, or NUL) is not `answered`: its caller asks HF.

A batch is tokenized as one string (its texts joined by a NUL chunk), and its ids come back as one flat
array with each text's start and length (`FlatIds`), so no per-text Python work is left but the lookups.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any

import numpy as np
from tokenizers import Tokenizer

# char::is_whitespace on ASCII (what WhitespaceSplit splits on) and Oniguruma's \s on ASCII.
ASCII_WHITESPACE = " \t\n\x0b\x0c\r"
# str.split() also splits on these; HF keeps them inside words. A text with one goes to HF.
PYTHON_ONLY_WHITESPACE = "\x1c\x1d\x1e\x1f"
# char::is_ascii_punctuation: what Punctuation isolates among ASCII characters.
ASCII_PUNCTUATION = string.punctuation
# Beyond ASCII, characters as plain as ASCII's: NFC and NFKC quick check Yes and combining class 0 (so a
# text of them is in NFC and NFKC already, whatever their order: none decomposes or composes with a
# neighbour), lowercase mappings that Python and Rust share, and each either a letter (neither whitespace
# nor punctuation anywhere) or in general category Pd, Pi or Pf (punctuation for HF, isolated).
LATIN1_LETTERS = "".join(chr(code) for code in range(0xC0, 0x100) if chr(code) not in "\u00d7\u00f7")
UNICODE_PUNCTUATION = "\u2013\u2014\u2018\u2019\u201c\u201d"  # en and em dash, curly quotes
PLAIN_CHARACTERS = "".join(map(chr, range(128))) + LATIN1_LETTERS + UNICODE_PUNCTUATION
# Between the texts of a batch joined into one string: a chunk of its own that maps to id -1. No text
# that holds it is answered, and no normalizer step (KNOWN_REGEXES, ASCII replacements) matches or
# writes it, so the texts' boundaries survive normalization.
_SEPARATOR, _SEPARATOR_ID = "\x00", -1
_UNANSWERED = PYTHON_ONLY_WHITESPACE + _SEPARATOR
# Any character a text, or a batch joined by _SEPARATOR, must not hold.
_NOT_PLAIN = re.compile(
    f"[^{re.escape(''.join(c for c in PLAIN_CHARACTERS if c not in PYTHON_ONLY_WHITESPACE))}]"
)
# Normalizers that leave every text of PLAIN_CHARACTERS as it is (NFD and NFKD decompose its letters).
PLAIN_IDENTITIES = frozenset({"NFC", "NFKC"})
# The Replace patterns known exactly on ASCII: the tokenizer's regex -> the same regex in Python, and
# a substring every match contains (testing for it is much cheaper than a search, and usually fails).
KNOWN_REGEXES = {r"<br\s*/?>": (f"<br[{re.escape(ASCII_WHITESPACE)}]*/?>", "<br")}
# Each punctuation character with the spaces that make it a token of its own for str.split.
_SPACED_PUNCTUATION = [(c, f" {c} ") for c in ASCII_PUNCTUATION + UNICODE_PUNCTUATION]


class UnknownComponent(Exception):
    """The tokenizer has a part whose behaviour the fast path does not reproduce exactly."""


@dataclass(frozen=True)
class FlatIds:
    """The untruncated ids of a batch's texts: text i's are ids[starts[i] : starts[i] + lengths[i]]."""

    ids: np.ndarray  # int32
    starts: np.ndarray  # intp, one per text
    lengths: np.ndarray  # intp, one per text

    @classmethod
    def of_rows(cls, rows: Sequence[Sequence[int]]) -> FlatIds:
        lengths = np.fromiter(map(len, rows), dtype=np.intp, count=len(rows))
        total = int(lengths.sum())
        ids = np.fromiter(chain.from_iterable(rows), dtype=np.int32, count=total)
        return cls(ids, np.cumsum(lengths) - lengths, lengths)

    @classmethod
    def merged(cls, parts: Sequence[tuple[Sequence[int], FlatIds]], count: int) -> FlatIds:
        """One batch of `count` texts from parts that each hold the texts at the positions given."""
        starts, lengths = np.empty(count, dtype=np.intp), np.empty(count, dtype=np.intp)
        offset = 0
        for positions, part in parts:
            starts[positions] = part.starts + offset
            lengths[positions] = part.lengths
            offset += part.ids.size
        return cls(np.concatenate([part.ids for _positions, part in parts]), starts, lengths)


class PythonWordLevel:
    """The ids (untruncated, unpadded) HF gives a plain text, from a dict lookup per token."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        spec = json.loads(tokenizer.to_str())
        self._steps = _normalizer_steps(spec.get("normalizer"))
        _check_pre_tokenizer(spec.get("pre_tokenizer"))
        if spec.get("added_tokens"):
            raise UnknownComponent("added tokens are matched before normalization")
        model = spec["model"]
        if model.get("type") != "WordLevel":
            raise UnknownComponent(f"model {model.get('type')}: only WordLevel is known")
        vocab: dict[str, int] = model["vocab"]
        if model.get("unk_token") not in vocab:
            raise UnknownComponent(f"unknown-word token {model.get('unk_token')!r} is not in the vocabulary")
        # WordLevel's lookup; the separator chunk gets _SEPARATOR_ID (no answered text holds it, so no
        # token of a text is looked up there)
        self._vocabulary = {**vocab, _SEPARATOR: _SEPARATOR_ID}
        self._unk_id = vocab[model["unk_token"]]

    def answers(self, text: str) -> bool:
        """False for a text that needs HF's Unicode rules (or holds a separator)."""
        return _SEPARATOR not in text and _NOT_PLAIN.search(text) is None

    def _tokens(self, texts: Sequence[str]) -> list[str] | None:
        """The batch's tokens, texts joined by one separator chunk each; None unless it `answers`
        every text."""
        joined = f" {_SEPARATOR} ".join(texts)
        if joined.count(_SEPARATOR) != len(texts) - 1:
            return None
        if joined.isascii():  # the usual batch: the few checks that need no pass over every character
            if any(c in joined for c in PYTHON_ONLY_WHITESPACE):
                return None
        elif _NOT_PLAIN.search(joined):
            return None
        for step in self._steps:
            joined = step(joined)
        for c, spaced in _SPACED_PUNCTUATION:
            if c in joined:
                joined = joined.replace(c, spaced)
        return joined.split()

    def batch(self, texts: Sequence[str]) -> FlatIds | None:
        """The texts' ids as one flat array, or None unless it `answers` every text."""
        count = len(texts)
        if count == 0:
            return FlatIds.of_rows([])
        tokens = self._tokens(texts)
        if tokens is None:
            return None
        ids = np.fromiter(
            map(self._vocabulary.get, tokens, repeat(self._unk_id)), dtype=np.int32, count=len(tokens)
        )
        ends = np.flatnonzero(ids == _SEPARATOR_ID)  # of every text but the last
        starts = np.empty(count, dtype=np.intp)
        starts[0], starts[1:] = 0, ends + 1
        lengths = np.empty(count, dtype=np.intp)
        lengths[:-1], lengths[-1] = ends - starts[:-1], ids.size - starts[-1]
        return FlatIds(ids, starts, lengths)

    def rows(self, texts: Sequence[str]) -> list[list[int]] | None:
        """The texts' ids as Python lists, or None unless it `answers` every text: for a few texts,
        cheaper than the arrays of `batch`, whose every NumPy call has a fixed cost."""
        tokens = self._tokens(texts) if texts else []
        if tokens is None:
            return None
        lookup, unknown = self._vocabulary.get, self._unk_id
        rows: list[list[int]] = [[]]
        for token in tokens:
            token_id = lookup(token, unknown)
            if token_id == _SEPARATOR_ID:
                rows.append([])
            else:
                rows[-1].append(token_id)
        return rows if texts else []


def _normalizer_steps(spec: dict[str, Any] | None) -> list[Callable[[str], str]]:
    """The normalizer as Python string functions, in order; identities on plain texts are left out."""
    if spec is None:
        return []
    parts = spec["normalizers"] if spec.get("type") == "Sequence" else [spec]
    steps: list[Callable[[str], str]] = []
    for part in parts:
        kind = part.get("type")
        if kind in PLAIN_IDENTITIES:
            continue
        if kind == "Lowercase":
            steps.append(str.lower)
        elif kind == "Replace" and part["pattern"].get("Regex") in KNOWN_REGEXES:
            steps.append(_replacement(*KNOWN_REGEXES[part["pattern"]["Regex"]], part["content"]))
        else:
            raise UnknownComponent(f"normalizer {json.dumps(part)} is not known on the fast path")
    return steps


def _replacement(pattern: str, contained: str, content: str) -> Callable[[str], str]:
    if _SEPARATOR in content or _NOT_PLAIN.search(content):
        raise UnknownComponent(f"replacement {content!r} is not plain text")
    regex, literal = re.compile(pattern), content.replace("\\", "\\\\")
    return lambda text: regex.sub(literal, text) if contained in text else text


def _check_pre_tokenizer(spec: dict[str, Any] | None) -> None:
    """Whitespace splitting and each punctuation character isolated, in either order."""
    parts = spec.get("pretokenizers", []) if spec and spec.get("type") == "Sequence" else [spec]
    known = [{"type": "Punctuation", "behavior": "Isolated"}, {"type": "WhitespaceSplit"}]
    if sorted(parts, key=json.dumps) != known:
        raise UnknownComponent(
            f"pre-tokenizer {json.dumps(spec)} is not WhitespaceSplit with Punctuation isolated"
        )
