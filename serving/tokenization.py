"""Tokenizers shared across models: each dataset's tokenizer.json is read once and checked by SHA-256.

All models of a dataset (and all their versions) were trained with the same file, so they share one
`TokenEncoder` around one `tokenizers.Tokenizer`. A config whose recorded SHA-256 differs from the
file on disk is refused: the model would see different token ids than it was trained on and answer
nonsense without any error. The tokenizer is shared, the padding is each model's own: `encode` takes
the model's `SequencePadding` (serving.sequence).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from serving.fast_tokenizer import FlatIds, PythonWordLevel, UnknownComponent
from serving.sequence import SequencePadding

# Batches of at most this many texts are cut and padded in Python lists rather than NumPy arrays
# (bench/tokenizer_speed.py measures both: below it each NumPy call's fixed cost outweighs the loop).
SMALL_BATCH = 4


class TokenizerMismatch(Exception):
    """The tokenizer file on disk is not the one the model was trained with."""


class TokenEncoder:
    """Texts -> int32 token ids, one row per text: the tokenizer's own truncation and padding, padded only
    as far as the model needs (serving.sequence).

    Padding inside the tokenizer builds every padding token (string, masks, type id) of every text and
    hands each id over as a Python int: for a headline padded to 256 tokens that is most of the cost.
    When the tokenizer truncates and pads to one fixed length and adds no special tokens, the texts are
    tokenized without either and cut and padded in NumPy instead, which gives the same ids in about half
    the time; and when it pads on the right with id 0, a variable-length model's batch stops after the
    columns its `SequencePadding` asks for (all of the cut columns are padding). Any other tokenizer keeps
    its own path and every model gets its full rows: they are right for a variable-length graph too,
    only not shorter.

    On that path, a tokenizer made only of parts serving.fast_tokenizer knows exactly (the ones training
    writes) has its plain texts (ASCII, Latin-1 letters, dashes and quotes) split in Python, several
    times faster; every other text, and every other tokenizer, is tokenized by HF. `fast_path_refusal`
    says why a tokenizer has no fast path; `python_fast_path=False` turns it off (the HF path that
    bench/tokenizer_speed.py measures beside it).
    """

    def __init__(self, tokenizer: Tokenizer, *, python_fast_path: bool = True) -> None:
        self._tokenizer = tokenizer
        self._bare: Tokenizer | None = None
        self._words: PythonWordLevel | None = None
        self.fast_path_refusal: str | None = "the tokenizer pads itself"
        padding, truncation = tokenizer.padding, tokenizer.truncation
        if padding is None or truncation is None:
            return
        one_fixed_length = (
            tokenizer.post_processor is None
            and padding["length"] is not None
            and padding["pad_to_multiple_of"] is None
            and truncation["max_length"] == padding["length"]
            and truncation["stride"] == 0
        )
        if not one_fixed_length:
            return
        self._length = int(padding["length"])
        self._pad_id = int(padding["pad_id"])
        self._pad_left = padding["direction"] == "left"
        self._keep_end = truncation["direction"] == "left"
        self._trims = not self._pad_left and self._pad_id == 0
        self._bare = Tokenizer.from_str(tokenizer.to_str())
        self._bare.no_padding()
        self._bare.no_truncation()
        if not python_fast_path:
            self.fast_path_refusal = "turned off"
            return
        try:
            self._words = PythonWordLevel(tokenizer)
            self.fast_path_refusal = None
        except UnknownComponent as refusal:
            self.fast_path_refusal = str(refusal)

    @property
    def pads_itself(self) -> bool:
        """True when this class cuts and pads (the fast path), False when the tokenizer does."""
        return self._bare is not None

    @property
    def length(self) -> int | None:
        """The one length the tokenizer truncates and pads to (None: it decides per batch)."""
        return self._length if self._bare is not None else None

    def encode(self, texts: Sequence[str], padding: SequencePadding) -> np.ndarray:
        # encode_batch_fast: the same ids without character offsets, which serving never reads
        if self._bare is None:
            return np.array([e.ids for e in self._tokenizer.encode_batch_fast(list(texts))], dtype=np.int32)
        if len(texts) <= SMALL_BATCH and self._words is not None:
            rows = self._words.rows(texts)
            if rows is not None:
                return self._padded(rows, padding)
        tokens = self._untruncated(texts)
        kept = np.minimum(tokens.lengths, self._length)
        starts = tokens.starts + tokens.lengths - kept if self._keep_end else tokens.starts
        width = padding.width(int(kept.max(initial=0))) if self._trims else self._length
        columns = np.arange(width)
        if self._pad_left:
            filled = columns >= (width - kept)[:, None]
            source = (starts - (width - kept))[:, None] + columns
        else:
            filled = columns < kept[:, None]
            source = starts[:, None] + columns
        ids = np.full((len(texts), width), self._pad_id, dtype=np.int32)
        ids[filled] = tokens.ids[source[filled]]
        return ids

    def _padded(self, rows: list[list[int]], padding: SequencePadding) -> np.ndarray:
        """`encode`'s cut and padding of a few texts' untruncated ids, in Python: the same ids."""
        length = self._length
        kept = [row[-length:] for row in rows] if self._keep_end else [row[:length] for row in rows]
        width = padding.width(max(map(len, kept), default=0)) if self._trims else length
        pad = [self._pad_id]
        if self._pad_left:
            padded = [pad * (width - len(row)) + row for row in kept]
        else:
            padded = [row + pad * (width - len(row)) for row in kept]
        return np.array(padded, dtype=np.int32).reshape(len(kept), width)

    def _untruncated(self, texts: Sequence[str]) -> FlatIds:
        """The texts' ids before truncation: from the fast path where it answers, else from HF."""
        assert self._bare is not None
        if self._words is not None:
            tokens = self._words.batch(texts)
            if tokens is not None:
                return tokens
            answered = [row for row, text in enumerate(texts) if self._words.answers(text)]
            if answered:
                others = sorted(set(range(len(texts))).difference(answered))
                fast = self._words.batch([texts[row] for row in answered])
                assert fast is not None
                return FlatIds.merged(
                    [(answered, fast), (others, self._hf([texts[row] for row in others]))], len(texts)
                )
        return self._hf(texts)

    def _hf(self, texts: Sequence[str]) -> FlatIds:
        assert self._bare is not None
        return FlatIds.of_rows([encoding.ids for encoding in self._bare.encode_batch_fast(list(texts))])


class TokenizerStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[Path, tuple[str, TokenEncoder]] = {}

    def get(self, path: Path, expected_sha256: str) -> TokenEncoder:
        with self._lock:
            if path not in self._loaded:
                data = path.read_bytes()
                encoder = TokenEncoder(Tokenizer.from_str(data.decode("utf-8")))
                self._loaded[path] = (hashlib.sha256(data).hexdigest(), encoder)
            sha256, encoder = self._loaded[path]
        if sha256 != expected_sha256.lower():
            raise TokenizerMismatch(
                f"{path} has SHA-256 {sha256}, but the model was trained with {expected_sha256}"
            )
        return encoder

    def __len__(self) -> int:
        return len(self._loaded)
