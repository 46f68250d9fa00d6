"""Does a variable-length batch run faster with its width rounded up, or with its texts grouped by length?

Measured on each variable-length model of a repository, with batches of real texts of its dataset, on
ONNX Runtime and (when installed) TensorFlow, through the serving runtime classes. The ids are made
before timing, so only the runtime's cost differs between the subjects, interleaved per round:
- exact: every batch of 32 padded to what its model needs (serving.sequence), as the server does;
- rounded: the same batches, the width rounded up to a multiple of 8 (buckets: fewer distinct shapes);
- one batch of 64 texts padded to its longest, as the batcher forms it from 64 one-text requests;
- grouped: the same 64 texts sorted by length and run as two batches of 32, each padded to its own
  longest: the most a batcher that groups queued requests by length could gain.

    .venv/bin/python -m bench.studies.padding_choices [--models models] [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from bench.dataset_texts import DATA_DIR, dataset_texts
from bench.in_process import InProcessModel, load_in_process
from bench.inference_timing import TimingBudget, interleaved_timings
from bench.machine import cpu_model, loads_text, now_text
from bench.models import find_models
from bench.speed_verdicts import TimingSpread
from seqserve.loadtest.texts import load_texts
from serving.sequence import SequencePadding

BATCH = 32
GROUPS = 2  # a batch of GROUPS * BATCH texts against GROUPS sorted batches of BATCH
ROUND_TO = 8
BATCHES = 16  # batches of GROUPS * BATCH texts per timed call
SUBJECTS = (
    "exact",
    f"rounded to {ROUND_TO}",
    f"one batch of {GROUPS * BATCH}",
    f"grouped {GROUPS} x {BATCH}",
)


def rounded(width: int, max_length: int) -> int:
    return min(max_length, -(-width // ROUND_TO) * ROUND_TO)


def id_sets(model: InProcessModel, texts: Sequence[str]) -> dict[str, list[np.ndarray]]:
    """Subject -> the id arrays one timed call runs, all from the same texts."""
    full = model.encoder.encode(texts, SequencePadding(model.config.max_length))
    lengths = (full != 0).sum(axis=1)  # variable-length graphs pad with id 0 after the text

    def cut(rows: np.ndarray, round_up: bool = False) -> np.ndarray:
        width = model.padding.width(int(lengths[rows].max()))
        return full[rows, : rounded(width, model.config.max_length) if round_up else width]

    sets: dict[str, list[np.ndarray]] = {name: [] for name in SUBJECTS}
    large = GROUPS * BATCH
    for start in range(0, len(texts) - large + 1, large):
        rows = np.arange(start, start + large)
        small = np.array_split(rows, GROUPS)
        sets[SUBJECTS[0]] += [cut(r) for r in small]
        sets[SUBJECTS[1]] += [cut(r, round_up=True) for r in small]
        sets[SUBJECTS[2]].append(cut(rows))
        by_length = np.array_split(rows[np.argsort(lengths[rows], kind="stable")], GROUPS)
        sets[SUBJECTS[3]] += [cut(r) for r in by_length]
    return sets


def run_all(run: Callable[[np.ndarray], np.ndarray], arrays: Sequence[np.ndarray]) -> None:
    for ids in arrays:
        run(ids)


def time_model(model: InProcessModel, texts: Sequence[str], budget: TimingBudget) -> dict[str, TimingSpread]:
    """Subject -> CPU µs per text."""
    sets = id_sets(model, texts)
    reference = [model.runtime.run(ids) for ids in sets[SUBJECTS[0]]]
    for name in SUBJECTS[1:2]:  # same batches, wider: the outputs must not change
        for expected, ids in zip(reference, sets[name], strict=True):
            np.testing.assert_allclose(model.runtime.run(ids), expected, atol=1e-5)
    subjects = {name: partial(run_all, model.runtime.run, arrays) for name, arrays in sets.items()}
    samples = interleaved_timings(subjects, budget)
    return {name: TimingSpread.of([1e6 * x / len(texts) for x in samples.cpu[name]]) for name in SUBJECTS}


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=Path("models"), help="model repository [%(default)s]")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="datasets' texts [%(default)s]")
    parser.add_argument("--seconds-per-subject", type=float, default=1.0, help="timing budget [%(default)s]")
    parser.add_argument(
        "--report", type=Path, default=Path("reports/padding_choices.md"), help="markdown output"
    )
    args = parser.parse_args(args_list)

    models = [m for m in find_models(args.models) if m.config.sequence.variable_length]
    if not models:
        print(f"bench: no variable-length model in {args.models}/", file=sys.stderr)
        return 1
    runtimes = ["onnx"] + (["tf"] if importlib.util.find_spec("tensorflow") else [])
    budget = TimingBudget(min_rounds=5, seconds_per_subject=args.seconds_per_subject)
    texts = {
        d: load_texts(dataset_texts(d, args.data_dir), limit=BATCHES * GROUPS * BATCH)
        for d in {m.config.dataset for m in models}
    }
    load_before = os.getloadavg()
    lines = [
        "# Padding choices for variable-length batches",
        "",
        f"- command: `{shlex.join(['.venv/bin/python', '-m', 'bench.studies.padding_choices', *args_list])}`",
        f"- date: {now_text()}",
        f"- machine: {cpu_model()}, {os.cpu_count()} logical CPUs; load average at start "
        f"{loads_text(load_before)}",
        f"- runtime CPU µs per text, median (interquartile range) over interleaved rounds of {BATCHES} x "
        f"{GROUPS * BATCH} real texts; rounding gain = exact / rounded; grouping gain = the cheaper of "
        "exact and one batch / grouped (above 1: the choice is cheaper)",
        "",
        "| runtime | model | " + " | ".join(SUBJECTS) + " | rounding gain | grouping gain |",
        "|---|---|" + "---:|" * (len(SUBJECTS) + 2),
    ]
    for runtime in runtimes:
        for files in models:
            if (
                runtime == "tf"
                and not (files.version_dir / (files.config.export.saved_model_dir or "saved_model")).is_dir()
            ):
                continue
            model = load_in_process(files.version_dir, files.config, args.models, runtime)
            spreads = time_model(model, texts[files.config.dataset], budget)
            exact, rounded_up, one_batch, grouped = (spreads[name].median for name in SUBJECTS)
            cells = [f"{s.median:.1f} ({s.low:.1f}-{s.high:.1f})" for s in spreads.values()]
            cells += [f"{exact / rounded_up:.2f}x", f"{min(exact, one_batch) / grouped:.2f}x"]
            lines.append(f"| {runtime} | {files.name} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text("\n".join(lines) + "\n")
    print(f"written to {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
