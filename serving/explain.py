"""Per-word explanations: how much each word of a text moves the model's answer (leave one word out).

A word's attribution is the explained label's probability for the whole text minus its probability for
the text without that word. A "word" is a pre-tokenizer word of the dataset's tokenizer, widened to the
span of original characters it came from: a character the normaliser expands into several words ("…"
into three dots) is one word, since a client can only remove characters. Each word carries its
character span in the text as sent (the tokenizer's offsets), so a client highlights its own text,
case and punctuation intact.

All variants of a text (the text itself and one row per seen word) are built from the text's own
untruncated ids with that word's positions dropped, then truncated and padded as classification pads
them (serving.sequence), and run through the model's runtime in one call. Dropping the ids equals
tokenizing the text with the word's span replaced by a space (tests/serving/test_explain.py), with one
exception a normaliser rule across words can make: removing a word can join markup that the normaliser
then deletes (`<br x/>` without `x` is a line break of the IMDB tokenizer); the explanation then
removes exactly that word's ids, and nothing else. Words the model never sees (cut off by max_length)
get attribution 0 and are flagged unseen; words outside the vocabulary (the unknown id) are explained
like any other and flagged OOV.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer

from serving.runtimes import Runtime
from serving.sequence import SequencePadding


class ExplainUnsupported(Exception):
    """The model's tokenizer is of a kind whose words cannot be removed id by id."""


@dataclass(frozen=True)
class Word:
    start: int  # characters of the text as sent: text[start:end]
    end: int
    attribution: float  # P(label | text) - P(label | text without this word); 0 when unseen
    oov: bool  # every id of the word is the tokenizer's unknown id
    seen: bool  # inside the model's max_length window


@dataclass(frozen=True)
class Explanation:
    label: str  # the label whose probability is explained
    probability: float  # its probability for the whole text
    words: tuple[Word, ...]
    variants: int  # rows run through the model: 1 + the seen words


@dataclass(frozen=True)
class TextWords:
    """A text's untruncated ids and its words: word i covers ids[positions[i]] and text[spans[i]]."""

    ids: np.ndarray  # int32 [tokens]
    positions: tuple[tuple[int, ...], ...]
    spans: tuple[tuple[int, int], ...]


class WordSplitter:
    """A dataset tokenizer's words, ids and truncation window, without its padding or truncation.

    Only a tokenizer that truncates and pads every text to one fixed length and adds no special tokens
    (every tokenizer training writes) has ids from which a word can be dropped position by position."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        padding, truncation = tokenizer.padding, tokenizer.truncation
        if (
            padding is None
            or truncation is None
            or tokenizer.post_processor is not None
            or padding["length"] is None
            or truncation["max_length"] != padding["length"]
            or truncation["stride"] != 0
        ):
            raise ExplainUnsupported(
                "explanations need a tokenizer that truncates and pads to one fixed length and adds no "
                "special tokens"
            )
        self.length = int(padding["length"])
        self.pad_id = int(padding["pad_id"])
        self._pad_left = padding["direction"] == "left"
        self._keep_end = truncation["direction"] == "left"
        unknown = getattr(tokenizer.model, "unk_token", None)
        self.unk_id = tokenizer.token_to_id(unknown) if unknown else None
        self._bare = Tokenizer.from_str(tokenizer.to_str())
        self._bare.no_padding()
        self._bare.no_truncation()

    def split(self, text: str) -> TextWords:
        encoding = self._bare.encode(text)
        positions: list[list[int]] = []
        spans: list[list[int]] = []
        for position, (start, end) in enumerate(encoding.offsets):
            if spans and start < spans[-1][1]:  # shares characters with the word before: one word
                positions[-1].append(position)
                spans[-1][1] = max(spans[-1][1], end)
            else:
                positions.append([position])
                spans.append([start, end])
        return TextWords(
            np.asarray(encoding.ids, dtype=np.int32),
            tuple(map(tuple, positions)),
            tuple((start, end) for start, end in spans),
        )

    def window(self, tokens: int) -> range:
        """The positions of `tokens` ids that truncation keeps."""
        if tokens <= self.length:
            return range(tokens)
        return range(tokens - self.length, tokens) if self._keep_end else range(self.length)

    def truncate(self, ids: np.ndarray) -> np.ndarray:
        window = self.window(len(ids))
        return ids[window.start : window.stop]

    def pad(self, rows: Sequence[np.ndarray], padding: SequencePadding) -> np.ndarray:
        """Truncated rows -> [len(rows), width], padded as far as the model needs (serving.sequence):
        only a right-padding tokenizer with pad id 0 has padding a variable-length graph may omit."""
        trims = not self._pad_left and self.pad_id == 0
        width = padding.width(max(map(len, rows), default=0)) if trims else self.length
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int32)
        for index, row in enumerate(rows):
            if self._pad_left:
                ids[index, width - len(row) :] = row
            else:
                ids[index, : len(row)] = row
        return ids

    def seen(self, words: TextWords) -> list[bool]:
        window = self.window(len(words.ids))
        return [any(p in window for p in positions) for positions in words.positions]

    def variants(self, words: TextWords, padding: SequencePadding) -> np.ndarray:
        """The text's row, then one row per seen word with that word's ids dropped, all padded alike."""
        rows = [self.truncate(words.ids)]
        for positions, seen in zip(words.positions, self.seen(words), strict=True):
            if seen:
                rows.append(self.truncate(np.delete(words.ids, positions)))
        return self.pad(rows, padding)


@dataclass(frozen=True)
class Explainer:
    """One model's explanations: its tokenizer's words, its padding, its runtime."""

    splitter: WordSplitter
    padding: SequencePadding
    runtime: Runtime
    labels: Sequence[str]

    def explain(self, text: str) -> Explanation:
        """Blocking (runs in a thread): one runtime call with every variant of `text`."""
        words = self.splitter.split(text)
        rows = self.splitter.variants(words, self.padding)
        probabilities = np.asarray(self.runtime.run(rows), dtype=np.float64)
        # two labels: the second (the positive class); more: the whole text's most probable one
        column = 1 if len(self.labels) == 2 else int(probabilities[0].argmax())
        base = float(probabilities[0, column])
        without = iter(probabilities[1:, column].tolist())
        explained = []
        seen_words = self.splitter.seen(words)
        for positions, span, seen in zip(words.positions, words.spans, seen_words, strict=True):
            oov = self.splitter.unk_id is not None and all(
                int(words.ids[p]) == self.splitter.unk_id for p in positions
            )
            attribution = base - next(without) if seen else 0.0
            explained.append(Word(span[0], span[1], attribution, oov, seen))
        return Explanation(self.labels[column], base, tuple(explained), len(rows))
