"""The per-dataset word tokenizer, stored as one HuggingFace `tokenizers` JSON file.

Everything that turns text into ids (normalisation, splitting, vocabulary, truncation, padding) lives
inside the file, so the server reproduces training's ids by loading it; nothing is re-implemented.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel

PAD_TOKEN, UNK_TOKEN = "[PAD]", "[UNK]"
PAD_ID, UNK_ID = 0, 1


class TokenizerMismatchError(Exception):
    """An existing tokenizer file disagrees with the settings asked for; it is never overwritten."""


@dataclass(frozen=True)
class StoredTokenizer:
    tokenizer: Tokenizer
    path: Path
    sha256: str
    max_length: int
    vocab_size: int
    reused: bool


def tokenizer_path(models: Path, dataset: str) -> Path:
    return models / "tokenizers" / dataset / "tokenizer.json"


def _empty_tokenizer(vocab: dict[str, int]) -> Tokenizer:
    tokenizer = Tokenizer(WordLevel(vocab, unk_token=UNK_TOKEN))
    # IMDB reviews carry literal "<br />" line breaks; they are markup, not words.
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Replace(Regex(r"<br\s*/?>"), " "), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    return tokenizer


def build_tokenizer(texts: list[str], vocab_size: int, max_length: int, truncation_side: str) -> Tokenizer:
    """[PAD]=0, [UNK]=1, then the most frequent words of `texts` (ties broken alphabetically, so the
    vocabulary is the same on every run) up to `vocab_size` entries in total."""
    if vocab_size < 3:
        raise ValueError(f"vocab_size must be at least 3 ([PAD], [UNK] and one word), got {vocab_size}")
    splitter = _empty_tokenizer({PAD_TOKEN: PAD_ID, UNK_TOKEN: UNK_ID})
    counts: Counter[str] = Counter()
    for text in texts:
        normalized = splitter.normalizer.normalize_str(text)
        counts.update(word for word, _span in splitter.pre_tokenizer.pre_tokenize_str(normalized))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[: vocab_size - 2]
    vocab = {PAD_TOKEN: PAD_ID, UNK_TOKEN: UNK_ID}
    vocab.update({word: index for index, (word, _count) in enumerate(ranked, start=2)})
    tokenizer = _empty_tokenizer(vocab)
    tokenizer.enable_truncation(max_length=max_length, direction=truncation_side)
    tokenizer.enable_padding(direction="right", pad_id=PAD_ID, pad_token=PAD_TOKEN, length=max_length)
    return tokenizer


def fixed_length(tokenizer: Tokenizer) -> int:
    """The max_length stored in the file (truncation and padding agree on it)."""
    padding, truncation = tokenizer.padding, tokenizer.truncation
    if not padding or not truncation or padding.get("length") != truncation.get("max_length"):
        raise TokenizerMismatchError("tokenizer must pad and truncate to one fixed length")
    return int(truncation["max_length"])


def load_or_build(
    models: Path,
    dataset: str,
    train_texts: list[str],
    vocab_size: int,
    max_length: int,
    truncation_side: str,
) -> StoredTokenizer:
    """The dataset's tokenizer: reused when `<models>/tokenizers/<dataset>/tokenizer.json` exists (so all
    models and versions of a dataset share ids), else built from the training texts and stored."""
    path = tokenizer_path(models, dataset)
    reused = path.is_file()
    if not reused:
        tokenizer = build_tokenizer(train_texts, vocab_size, max_length, truncation_side)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, tokenizer.to_str(pretty=True))
    tokenizer = Tokenizer.from_file(str(path))
    stored_length = fixed_length(tokenizer)
    if reused and stored_length != max_length:
        raise TokenizerMismatchError(
            f"{path} pads to max_length {stored_length}, not {max_length}: omit --max-length (or pass "
            f"{stored_length}), or train into another --models directory to build a new tokenizer"
        )
    return StoredTokenizer(
        tokenizer=tokenizer,
        path=path,
        sha256=file_sha256(path),
        max_length=stored_length,
        vocab_size=tokenizer.get_vocab_size(),
        reused=reused,
    )


def stored_max_length(models: Path, dataset: str) -> int | None:
    """max_length of an existing tokenizer, so a later run can default to it."""
    path = tokenizer_path(models, dataset)
    return fixed_length(Tokenizer.from_file(str(path))) if path.is_file() else None


def encode(tokenizer: Tokenizer, texts: list[str]) -> np.ndarray:
    """int32 ids [len(texts), max_length]: the same call, on the same file, as the server makes."""
    return np.asarray([encoding.ids for encoding in tokenizer.encode_batch_fast(texts)], dtype=np.int32)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_atomically(path: Path, content: str) -> None:
    """Readers see either no file or the whole file, never a partial one."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(content)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
