"""The tokenizer's cost per headline in process, three ways side by side in one run: `make bench`.

Batches of 32 real headlines (the sarcasm dataset, a fixed shuffle), each way timed over the same
batches in interleaved rounds (the order rotates every round), as `seqserve serve` runs the tokenizer
(TOKENIZERS_PARALLELISM=false):
- HF encode_batch_fast: the `tokenizers` call alone, without padding or truncation, ids left inside
  HF's Encoding objects (no array): the floor of any path through HF;
- TokenEncoder, HF path: HF's ids cut and padded in NumPy into the int32 array, the path every
  tokenizer took before the Python fast path and the one a refused tokenizer or a non-ASCII text takes;
- TokenEncoder: as served, the Python fast path for ASCII headlines (serving/fast_tokenizer.py).
Both TokenEncoder ways pad as a variable-length model does (to the batch's longest headline) and are
checked to give identical arrays on every batch before any timing. Target: <= 4 µs per headline, judged
on CPU time (one thread: TOKENIZERS_PARALLELISM=false), which other processes on a shared machine
inflate far less than the wall clock; both are reported.

    .venv/bin/python -m bench.tokenizer_speed [--models models] [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from serving.fast_tokenizer import PythonWordLevel
from serving.sequence import SequencePadding
from serving.tokenization import TokenEncoder

BATCH = 32
TARGET_US = 4.0
SHUFFLE_SEED = 0


@dataclass(frozen=True)
class Timings:
    """Per-round µs per headline of each way: wall clock and process CPU."""

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]


def headline_batches(data_dir: Path, batches: int) -> list[list[str]]:
    records = json.loads((data_dir / "sarcasm" / "sarcasm.json").read_text(encoding="utf-8"))
    headlines = [str(record["headline"]) for record in records]
    random.Random(SHUFFLE_SEED).shuffle(headlines)
    count = min(batches, len(headlines) // BATCH)
    return [headlines[start * BATCH : (start + 1) * BATCH] for start in range(count)]


def sarcasm_tokenizer(models: Path, data_dir: Path) -> tuple[Tokenizer, str]:
    """The trained sarcasm tokenizer, or one built from the data as `seqserve train` builds it."""
    path = models / "tokenizers" / "sarcasm" / "tokenizer.json"
    if path.is_file():
        return Tokenizer.from_file(str(path)), str(path)
    from training.datasets import load_dataset  # only when no model repository is there to read
    from training.settings import dataset_defaults
    from training.tokenizer import build_tokenizer

    defaults = dataset_defaults("sarcasm")
    dataset = load_dataset("sarcasm", data_dir, seed=42, validation_fraction=defaults.validation_fraction)
    tokenizer = build_tokenizer(
        dataset.train.texts, defaults.vocab_size, defaults.max_length, defaults.truncation_side
    )
    return tokenizer, f"built from {data_dir}/sarcasm (no {path})"


def interleaved(
    ways: dict[str, Callable[[list[str]], object]], batches: list[list[str]], rounds: int
) -> Timings:
    names = list(ways)
    timings = Timings({name: [] for name in names}, {name: [] for name in names})
    texts = len(batches) * BATCH
    for round_number in range(rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            way = ways[name]
            wall, cpu = time.perf_counter(), time.process_time()
            for batch in batches:
                way(batch)
            timings.cpu[name].append((time.process_time() - cpu) / texts * 1e6)
            timings.wall[name].append((time.perf_counter() - wall) / texts * 1e6)
    return timings


def spread(values: list[float]) -> str:
    low, _median, high = statistics.quantiles(values, n=4, method="inclusive")
    return f"{statistics.median(values):.2f} ({low:.2f}-{high:.2f})"


def report(
    args: argparse.Namespace,
    source: str,
    answered: str,
    timings: Timings,
    load: list[tuple[float, float, float]],
) -> str:
    hf, old, new = list(timings.wall)  # the three ways, in the order main() lists them
    median = {name: statistics.median(values) for name, values in timings.wall.items()}
    cpu = {name: statistics.median(values) for name, values in timings.cpu.items()}
    command = " ".join(["python -m bench.tokenizer_speed", *map(shlex.quote, sys.argv[1:])])
    rows = [
        f"| {name} | {spread(timings.wall[name])} | {spread(timings.cpu[name])} | "
        f"{median[name] / median[new]:.2f}x | {cpu[name] / cpu[new]:.2f}x |"
        for name in timings.wall
    ]
    verdict = "met" if cpu[new] <= TARGET_US else "missed"
    return "\n".join(
        [
            "# Tokenizer speed in process",
            "",
            f"- command: `{command}` (part of `make bench`)",
            f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            f"- machine: {os.cpu_count()} logical CPUs; load average (1, 5, 15 min): start "
            f"{' '.join(f'{x:.2f}' for x in load[0])}; end {' '.join(f'{x:.2f}' for x in load[1])}",
            f"- tokenizer: {source}; {answered}",
            f"- {args.batches} batches of {BATCH} sarcasm headlines (shuffle seed {SHUFFLE_SEED}), "
            f"{args.rounds} interleaved rounds; TOKENIZERS_PARALLELISM=false as served",
            "- both TokenEncoder ways gave identical arrays on every batch (checked before timing)",
            "",
            "µs per headline, median (interquartile range) of the rounds; ratios = that way's median over "
            "TokenEncoder's (how many times slower than the fast path).",
            "",
            "| way | wall µs/headline | CPU µs/headline | wall ratio | CPU ratio |",
            "|---|---:|---:|---:|---:|",
            *rows,
            "",
            f"Target: TokenEncoder <= {TARGET_US:.0f} µs CPU per headline: {verdict} ({cpu[new]:.2f} µs; "
            f"wall {median[new]:.2f} µs); by CPU {cpu[hf] / cpu[new]:.2f}x less than HF's encode_batch_fast "
            f"alone and {cpu[old] / cpu[new]:.2f}x less than the HF path.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--batches", type=int, default=200, help="batches of 32 headlines per timed round")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--report", type=Path, default=Path("reports/tokenizer.md"))
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # as `seqserve serve` runs the tokenizer

    tokenizer, source = sarcasm_tokenizer(args.models, args.data_dir)
    batches = headline_batches(args.data_dir, args.batches)
    fast, hf_path = TokenEncoder(tokenizer), TokenEncoder(tokenizer, python_fast_path=False)
    if fast.length is None:
        print(
            f"{source}: the tokenizer pads itself; TokenEncoder has no fast path to measure", file=sys.stderr
        )
        return 1
    padding = SequencePadding(fast.length, variable_length=True)
    for batch in batches:
        if not np.array_equal(fast.encode(batch, padding), hf_path.encode(batch, padding)):
            print(f"the fast path differs from HF on {batch}", file=sys.stderr)
            return 1
    bare = Tokenizer.from_str(tokenizer.to_str())
    bare.no_padding()
    bare.no_truncation()
    ways: dict[str, Callable[[list[str]], object]] = {
        "HF encode_batch_fast (no array)": bare.encode_batch_fast,
        "TokenEncoder, HF path": lambda batch: hf_path.encode(batch, padding),
        "TokenEncoder (fast path)": lambda batch: fast.encode(batch, padding),
    }
    load_start = os.getloadavg()
    timings = interleaved(ways, batches, args.rounds)
    words = PythonWordLevel(tokenizer)
    answered = sum(map(words.answers, chain.from_iterable(batches)))
    share = f"headlines the fast path answers: {answered} of {len(batches) * BATCH}, the rest go to HF"
    text = report(args, source, share, timings, [load_start, os.getloadavg()])
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
