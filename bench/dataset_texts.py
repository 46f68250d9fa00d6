"""Real texts of each dataset, where the benchmarks read them: sarcasm headlines, IMDB test reviews."""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path("../shared/data")
# dataset -> texts path below the data directory (seqserve.loadtest.texts reads each kind)
TEXTS = {"sarcasm": "sarcasm/sarcasm.json", "imdb": "imdb/aclImdb_v1.tar.gz/aclImdb/test"}


def dataset_texts(dataset: str, data_dir: Path = DATA_DIR) -> Path:
    if dataset not in TEXTS:
        raise ValueError(f"no texts known for dataset {dataset!r}; known: {', '.join(TEXTS)}")
    return data_dir / TEXTS[dataset]
