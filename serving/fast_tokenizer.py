"""The ids of a word-level tokenizer, computed in Python for ASCII texts: exact by construction.

HF `tokenizers` spends most of a headline's time building an `Encoding` (tokens, offsets, masks) that
serving never reads. For the tokenizers training writes (NFKC, `<br />` -> space, lowercase; split on
whitespace, each punctuation character a token of its own; a word-level vocabulary), an ASCII text
needs none of the Unicode rules: NFKC leaves ASCII unchanged, and ASCII whitespace and punctuation are
the short lists below. So those texts are split with `str.lower`/`str.split` and one dict lookup per
whitespace-separated chunk instead.

The fast path is built only from a tokenizer whose every component (model, normalizers, pre-tokenizers,
added tokens) it knows exactly, read from the tokenizer's JSON; anything else raises `UnknownComponent`
and HF serves. Texts it cannot guarantee (any non-ASCII character, or the four ASCII separators that
Python's `str.split` takes for whitespace and HF does not) get `None`, and their caller asks HF.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any

from tokenizers import Tokenizer

# char::is_whitespace on ASCII (what WhitespaceSplit splits on) and Oniguruma's \s on ASCII.
ASCII_WHITESPACE = " \t\n\x0b\x0c\r"
# str.split() also splits on these; HF keeps them inside words. A text with one goes to HF.
PYTHON_ONLY_WHITESPACE = "\x1c\x1d\x1e\x1f"
_SEPARATOR = PYTHON_ONLY_WHITESPACE[0]
# char::is_ascii_punctuation: what Punctuation isolates among ASCII characters.
ASCII_PUNCTUATION = string.punctuation
# Normalizers that leave every ASCII text as it is.
ASCII_IDENTITIES = frozenset({"NFC", "NFD", "NFKC", "NFKD"})
# The Replace patterns known exactly on ASCII: the tokenizer's regex -> the same regex in Python, and
# a substring every match contains (testing for it is much cheaper than a search, and usually fails).
KNOWN_REGEXES = {r"<br\s*/?>": (f"<br[{re.escape(ASCII_WHITESPACE)}]*/?>", "<br")}
# Chunks beyond the vocabulary (unknown words, words with punctuation) whose ids are remembered.
CACHED_CHUNKS = 65_536
CACHED_CHUNK_LENGTH = 64

_PIECES = re.compile(f"[{re.escape(ASCII_PUNCTUATION)}]|[^{re.escape(ASCII_PUNCTUATION)}]+")


class UnknownComponent(Exception):
    """The tokenizer has a part whose behaviour the fast path does not reproduce exactly."""


class _ChunkIds(dict[str, tuple[int, ...]]):
    """Whitespace-free chunk -> its token ids: a word or punctuation character of the vocabulary is
    stored up front; any other chunk is split into punctuation and the runs between, looked up, and
    remembered while there is room (its ids never change, so the cache is exact)."""

    def __init__(self, vocab: dict[str, int], unk_id: int) -> None:
        super().__init__(
            (word, (index,))
            for word, index in vocab.items()
            if word.isascii() and word.split() == [word] and _PIECES.fullmatch(word)
        )
        self._vocab, self._unk_id = vocab, unk_id
        self._room = CACHED_CHUNKS

    def __missing__(self, chunk: str) -> tuple[int, ...]:
        ids = tuple(self._vocab.get(piece, self._unk_id) for piece in _PIECES.findall(chunk))
        if self._room > 0 and len(chunk) <= CACHED_CHUNK_LENGTH:
            self._room -= 1
            self[chunk] = ids
        return ids


class AsciiWordLevel:
    """The ids (untruncated, unpadded) HF gives an ASCII text, from a dict lookup per chunk."""

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
        self._chunks = _ChunkIds(vocab, vocab[model["unk_token"]])

    def batch_ids(self, texts: Sequence[str]) -> list[list[int] | None]:
        """Each text's ids, or None for a text that needs HF's Unicode rules.

        The usual batch is all ASCII: it is normalized as one string, its texts joined by a separator
        no text holds and no normalizer step matches or writes (PYTHON_ONLY_WHITESPACE)."""
        joined = _SEPARATOR.join(texts)
        if not joined.isascii() or joined.count(_SEPARATOR) != len(texts) - 1 or _holds_others(joined):
            return list(map(self._ids, texts))
        for step in self._steps:
            joined = step(joined)
        chunk_ids = self._chunks.__getitem__
        return [list(chain.from_iterable(map(chunk_ids, text.split()))) for text in joined.split(_SEPARATOR)]

    def _ids(self, text: str) -> list[int] | None:
        if not text.isascii() or _SEPARATOR in text or _holds_others(text):
            return None
        for step in self._steps:
            text = step(text)
        return list(chain.from_iterable(map(self._chunks.__getitem__, text.split())))


def _holds_others(text: str) -> bool:
    """True when `text` holds one of PYTHON_ONLY_WHITESPACE other than _SEPARATOR."""
    return "\x1d" in text or "\x1e" in text or "\x1f" in text


def _normalizer_steps(spec: dict[str, Any] | None) -> list[Callable[[str], str]]:
    """The normalizer as Python string functions, in order; identities on ASCII are left out."""
    if spec is None:
        return []
    parts = spec["normalizers"] if spec.get("type") == "Sequence" else [spec]
    steps: list[Callable[[str], str]] = []
    for part in parts:
        kind = part.get("type")
        if kind in ASCII_IDENTITIES:
            continue
        if kind == "Lowercase":
            steps.append(str.lower)
        elif kind == "Replace" and part["pattern"].get("Regex") in KNOWN_REGEXES:
            steps.append(_replacement(*KNOWN_REGEXES[part["pattern"]["Regex"]], part["content"]))
        else:
            raise UnknownComponent(f"normalizer {json.dumps(part)} is not known on the fast path")
    return steps


def _replacement(pattern: str, contained: str, content: str) -> Callable[[str], str]:
    if not content.isascii() or any(c in content for c in PYTHON_ONLY_WHITESPACE):
        raise UnknownComponent(f"replacement {content!r} is not plain ASCII")
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
