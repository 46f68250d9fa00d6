"""Does word order matter more to LSTM/GRU than to Flatten/GlobalAveragePooling/Conv1D? `make claims`.

Every architecture of every dataset in the repository scores the dataset's test split (exactly as
training.datasets makes it, from the split seed and validation fraction in the models' configs) twice:
as written, and with each text's words shuffled, for several shuffle seeds. The shuffle permutes the
words the model sees (those inside its max_length window, words as serving.explain splits them), so
the model sees the same words in another order; padding stays where it was. Every architecture sees the
same shuffles of the same texts, so architectures are compared text by text: the accuracy drop's 95 %
interval is a paired bootstrap over texts (the subsample, where a split is subsampled, is part of what
it resamples), and so is each difference of two architectures' drops. GlobalAveragePooling averages
its embeddings whatever their order, so its drop is the control: it must be zero within noise, and its
largest probability change under shuffling shows how close to exactly zero.

Also reported: how concentrated each model's explanation is, as the mean share of the largest
|attribution| (serving.explain, leave one word out) in the sum over a text's seen words, on texts of at
least two seen words.

    .venv/bin/python -m bench.word_order [--models models] [--data-dir ../shared/data] [--seeds 5] \
        [--max-texts imdb=5000] [--explain-texts 300] [--report reports/word_order.md]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from bench.dataset_texts import DATA_DIR
from bench.machine import cpu_model
from bench.models import ModelFiles, find_models
from seqserve.verdicts import RULE, Judgement, Verdict, verdict
from serving.explain import Explainer, TextWords, WordSplitter
from serving.runtimes import Runtime, create_runtime
from serving.sequence import SequencePadding
from training.datasets import Split, load_dataset

ORDER_SENSITIVE = ("lstm", "gru")  # the claim's two sides
ORDER_ROBUST = ("flatten", "gap", "conv")
CONTROL = "gap"
ARCHITECTURES = ("flatten", "gap", "conv", "rnn", "gru", "lstm", "lstm2")
SUBSAMPLE_SEED = 0
BOOTSTRAP = 2000
BATCH = 64
DEFAULT_MAX_TEXTS = {"imdb": 5000}  # IMDB's 25,000 long reviews; the others whole
DEFAULT_EXPLAIN_TEXTS = {"imdb": 200}


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def show(self, scale: float = 100.0, digits: int = 2) -> str:
        low, estimate, high = (f"{x * scale:+.{digits}f}" for x in (self.low, self.estimate, self.high))
        return f"{estimate} [{low}, {high}]"


@dataclass(frozen=True)
class Scores:
    """One model on one dataset's texts: correct (0/1) as written [texts] and shuffled [seeds, texts]."""

    architecture: str
    name: str
    written: np.ndarray
    shuffled: np.ndarray
    largest_change: float  # max |P(written) - P(shuffled)| over texts and seeds
    top_share: Interval | None

    @property
    def drop_per_text(self) -> np.ndarray:
        return self.written - self.shuffled.mean(axis=0)


def bootstrap(values: np.ndarray, resamples: np.ndarray) -> Interval:
    """Mean of `values` with the 95 % percentile interval over `resamples` (rows of text indices)."""
    means = values[resamples].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return Interval(float(values.mean()), float(low), float(high))


def shuffle_seen(splitter: WordSplitter, words: TextWords, rng: np.random.Generator) -> np.ndarray:
    """The truncated ids with the seen words in a random order (the padding is added later)."""
    window = splitter.window(len(words.ids))
    groups = [kept for positions in words.positions if (kept := [p for p in positions if p in window])]
    if not groups:
        return words.ids[window.start : window.stop]
    order = rng.permutation(len(groups))
    return np.concatenate([words.ids[groups[i]] for i in order]).astype(np.int32)


def run_rows(
    runtime: Runtime, splitter: WordSplitter, padding: SequencePadding, rows: list[np.ndarray]
) -> np.ndarray:
    """Positive-class probability of each row, in batches padded as the server pads them."""
    out = [runtime.run(splitter.pad(rows[i : i + BATCH], padding))[:, 1] for i in range(0, len(rows), BATCH)]
    return np.concatenate(out) if out else np.zeros(0)


def test_texts(model: ModelFiles, data_dir: Path, limit: int | None) -> tuple[Split, str]:
    """The dataset's test split as training made it, subsampled with a fixed seed above `limit`."""
    training = model.config.training
    test = load_dataset(
        model.config.dataset, data_dir, training.split_seed, training.validation_fraction
    ).test
    if limit is None or len(test) <= limit:
        return test, f"all {len(test):,} test texts"
    chosen = np.sort(np.random.default_rng(SUBSAMPLE_SEED).choice(len(test), limit, replace=False))
    subsample = Split([test.texts[i] for i in chosen], test.labels[chosen])
    return subsample, f"{limit:,} of {len(test):,} test texts (drawn with seed {SUBSAMPLE_SEED})"


def score(
    model: ModelFiles,
    repository: Path,
    split: Split,
    seeds: int,
    explain_texts: int,
) -> Scores:
    config = model.config
    splitter = WordSplitter(Tokenizer.from_file(str(repository / config.tokenizer.path)))
    padding = SequencePadding.of(config)
    runtime = create_runtime("onnx", model.version_dir, config, 1)
    words = [splitter.split(text) for text in split.texts]
    written = run_rows(runtime, splitter, padding, [splitter.truncate(w.ids) for w in words])
    shuffled = np.stack(
        [
            run_rows(
                runtime,
                splitter,
                padding,
                [shuffle_seen(splitter, w, np.random.default_rng([seed, i])) for i, w in enumerate(words)],
            )
            for seed in range(seeds)
        ]
    )
    labels = split.labels.astype(np.float64)
    shares = []
    explainer = Explainer(splitter, padding, runtime, config.labels)
    for text in split.texts[:: max(1, len(split) // explain_texts)][:explain_texts]:  # spread over the split
        magnitudes = np.abs([w.attribution for w in explainer.explain(text).words if w.seen])
        if len(magnitudes) >= 2 and magnitudes.sum() > 0:
            shares.append(magnitudes.max() / magnitudes.sum())
    share = None
    if shares:
        values = np.asarray(shares)
        resamples = np.random.default_rng(SUBSAMPLE_SEED).integers(0, len(values), (BOOTSTRAP, len(values)))
        share = bootstrap(values, resamples)
    return Scores(
        config.architecture,
        model.name,
        ((written >= 0.5) == labels).astype(np.float64),
        ((shuffled >= 0.5) == labels).astype(np.float64),
        float(np.abs(shuffled - written).max()) if len(written) else 0.0,
        share,
    )


@dataclass(frozen=True)
class Check:
    sensitive: str
    robust: str
    difference: Interval
    judgement: Judgement


def checks(by_architecture: dict[str, Scores], resamples: np.ndarray) -> list[Check]:
    """drop(LSTM or GRU) - drop(Flatten, GAP or Conv1D) per pair: yes above 0, no below, else unclear."""
    found = []
    for sensitive in ORDER_SENSITIVE:
        for robust in ORDER_ROBUST:
            if sensitive in by_architecture and robust in by_architecture:
                values = by_architecture[sensitive].drop_per_text - by_architecture[robust].drop_per_text
                interval = bootstrap(values, resamples)
                judgement = (
                    Judgement.SUPPORTS
                    if interval.low > 0
                    else Judgement.CONTRADICTS
                    if interval.high < 0
                    else Judgement.UNCLEAR
                )
                found.append(Check(sensitive, robust, interval, judgement))
    return found


def claim_verdict(found: Sequence[Check]) -> Verdict:
    """The claim's verdict from its checks, in the project's one vocabulary (seqserve.verdicts)."""
    return verdict(check.judgement for check in found)


def dataset_section(
    dataset: str, about: str, scores: dict[str, Scores], resamples: np.ndarray, seeds: int, explain_texts: int
) -> tuple[list[str], list[Check], bool]:
    """Markdown lines, the claim's checks on this dataset, and whether the control passed."""
    lines = [
        f"## {dataset}",
        "",
        f"{about}, {seeds} shuffle seeds each; {explain_texts} of them, evenly spread, explained for the "
        "top-word share. Accuracies in %; drop = written - shuffled, in points, with its paired-bootstrap "
        f"95 % interval ({BOOTSTRAP} resamples of the texts).",
        "",
        "| architecture | model | accuracy as written | shuffled (mean; seeds' range) | drop [95 % interval] "
        "| largest probability change | top-word share of \\|attribution\\| [95 % interval] |",
        "|---|---|---|---|---|---|---|",
    ]
    for architecture in sorted(scores, key=lambda a: ARCHITECTURES.index(a) if a in ARCHITECTURES else 99):
        s = scores[architecture]
        per_seed = s.shuffled.mean(axis=1)
        share = "n/a" if s.top_share is None else s.top_share.show(1.0, 3).replace("+", "")
        lines.append(
            f"| {architecture} | {s.name} | {100 * s.written.mean():.2f} | {100 * per_seed.mean():.2f}; "
            f"{100 * per_seed.min():.2f}-{100 * per_seed.max():.2f} | "
            f"{bootstrap(s.drop_per_text, resamples).show()} | {s.largest_change:.2g} | {share} |"
        )
    missing = [a for a in ARCHITECTURES if a not in scores]
    if missing:
        lines += ["", f"Not in the repository (not measured): {', '.join(missing)}."]
    found = checks(scores, resamples)
    result = claim_verdict(found)
    lines += ["", "Checks (drop of the first minus drop of the second, points, 95 % interval):", ""]
    lines += [f"- {c.sensitive} - {c.robust}: {c.difference.show()}: {c.judgement}" for c in found]
    control = scores.get(CONTROL)
    passed = True
    if control is not None:
        drop = bootstrap(control.drop_per_text, resamples)
        passed = drop.low <= 0 <= drop.high
        finding = "zero within noise" if passed else "**not zero: see why**"
        lines += [
            "",
            f"Control ({CONTROL}, order-blind by construction): drop {drop.show()} points, largest "
            f"probability change {control.largest_change:.2g}: {finding}.",
        ]
    lines += ["", f"Verdict on {dataset}: **{result}**.", ""]
    return lines, found, passed


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=Path("models"), help="model repository [%(default)s]")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="the datasets [%(default)s]")
    parser.add_argument("--seeds", type=int, default=5, help="shuffle seeds [%(default)s]")
    parser.add_argument(
        "--max-texts", action="append", default=[], metavar="DATASET=N",
        help="subsample a test split to N texts (default: imdb=5000, the others whole)",
    )  # fmt: skip
    parser.add_argument(
        "--explain-texts", action="append", default=[], metavar="DATASET=N",
        help="texts explained per model for the top-word share (default: imdb=200, the others 300)",
    )  # fmt: skip
    parser.add_argument("--report", type=Path, default=Path("reports/word_order.md"), help="markdown output")
    args = parser.parse_args(args_list)
    limits = {**DEFAULT_MAX_TEXTS, **dict(_pair(p) for p in args.max_texts)}
    explained = {**DEFAULT_EXPLAIN_TEXTS, **dict(_pair(p) for p in args.explain_texts)}
    started = time.monotonic()
    by_dataset: dict[str, list[ModelFiles]] = {}
    for model in find_models(args.models):
        if model.config.dataset and model.config.architecture and model.config.tokenizer.path:
            by_dataset.setdefault(model.config.dataset, []).append(model)
    sections, verdicts, controls, judgements = [], {}, [], []
    for dataset in sorted(by_dataset):
        models = by_dataset[dataset]
        splits = {(m.config.training.split_seed, m.config.training.validation_fraction) for m in models}
        if len(splits) > 1:  # the test split of one is training data of another
            print(
                f"bench.word_order: {dataset}'s models were split differently: {sorted(splits)}",
                file=sys.stderr,
            )
            return 2
        split, about = test_texts(models[0], args.data_dir, limits.get(dataset))
        explain_texts = explained.get(dataset, 300)
        scores = {}
        for model in models:
            print(f"  {model.name}: {len(split)} texts x (1 + {args.seeds} shuffles)", flush=True)
            scores[model.config.architecture] = score(model, args.models, split, args.seeds, explain_texts)
        resamples = np.random.default_rng(SUBSAMPLE_SEED).integers(0, len(split), (BOOTSTRAP, len(split)))
        lines, found, passed = dataset_section(
            dataset, about, scores, resamples, args.seeds, min(explain_texts, len(split))
        )
        verdicts[dataset] = claim_verdict(found)
        judgements += [check.judgement for check in found]
        sections += lines
        controls.append(passed)
    overall = verdict(judgements)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    command = shlex.join([".venv/bin/python", "-m", "bench.word_order", *args_list])
    report = [
        "# Word order: does it matter more to LSTM/GRU than to Flatten/GlobalAveragePooling/Conv1D?",
        "",
        f"- command: `{command}` (`make claims`); took {(time.monotonic() - started) / 60:.1f} min",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; machine: {cpu_model()}, "
        f"{os.cpu_count()} logical CPUs, load average at the end {load}",
        "- every model's newest version on ONNX Runtime (the serving runtime class), each batch padded as "
        "the server pads it; a prediction is the label with probability >= 0.5",
        f"- a check **{Judgement.SUPPORTS}** the claim when the interval of drop(LSTM or GRU) - "
        f"drop(Flatten, GAP or Conv1D) lies above 0, **{Judgement.CONTRADICTS}** it below 0, is "
        f"**{Judgement.UNCLEAR}** across it; the checks of every dataset together give the verdict. {RULE}",
        "",
        f"**Verdict: {overall}** ({'; '.join(f'{d}: {v}' for d, v in verdicts.items()) or 'no models'}). "
        f"Control: {'zero within noise on every dataset' if all(controls) else 'failed, see below'}.",
        "",
        *sections,
    ]
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text("\n".join(report))
    print(f"wrote {args.report}: {overall}")
    return 0


def _pair(text: str) -> tuple[str, int]:
    dataset, _, count = text.partition("=")
    return dataset, int(count)


if __name__ == "__main__":
    sys.exit(main())
