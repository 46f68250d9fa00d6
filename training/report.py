"""`seqserve report`: tables, seed-band curves and claim verdicts from every run in the repository.

Everything is read back from the model repository (config.pbtxt, runs.json, history.json), so the
report describes exactly what was trained and what would be served. Figures are given over seeds,
and each claim's verdict follows the rule in training.claims, printed in the report.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import numpy as np

from training.claims import RULE, THRESHOLDS, verdicts
from training.runs import Model, Run, load_models
from training.statistics import PERCENT, Spread

ARCHITECTURE_ORDER = ("flatten", "gap", "rnn", "lstm", "lstm2", "gru", "conv")


def _ordered(models: dict[str, Model]) -> list[Model]:
    known = [models[name] for name in ARCHITECTURE_ORDER if name in models]
    return known + [models[name] for name in sorted(models) if name not in ARCHITECTURE_ORDER]


def _band(runs: tuple[Run, ...], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, min, max) per epoch over the runs that reached it: a run may stop early."""
    longest = max(len(run.history[key]) for run in runs)
    stacked = np.full((len(runs), longest), np.nan)
    for row, run in zip(stacked, runs, strict=True):
        row[: len(run.history[key])] = run.history[key]
    return np.nanmean(stacked, axis=0), np.nanmin(stacked, axis=0), np.nanmax(stacked, axis=0)


def plot_curves(dataset: str, models: dict[str, Model], directory: Path) -> list[Path]:
    """One PNG for accuracy and one for loss: a panel per architecture, the mean over seeds as a line
    and their range shaded, train and validation, the published run's epoch marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = _ordered(models)
    written = []
    for metric in ("accuracy", "loss"):
        columns = min(4, len(ordered))
        rows = -(-len(ordered) // columns)
        figure, axes = plt.subplots(
            rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False, sharey=True
        )
        for axis, model in zip(axes.flat, ordered, strict=False):
            for key, label, marker in ((metric, "train", "o-"), (f"val_{metric}", "validation", "s-")):
                mean, low, high = _band(model.counted, key)
                epochs = np.arange(1, len(mean) + 1)
                (line,) = axis.plot(epochs, mean, marker, label=f"{label} (mean)", markersize=3)
                axis.fill_between(
                    epochs, low, high, color=line.get_color(), alpha=0.2, label=f"{label} (range)"
                )
            axis.axvline(
                model.published.published_epoch, color="grey", linestyle=":", label="published epoch"
            )
            left_out = len(model.runs) - len(model.counted)
            note = f"; {left_out} degenerate left out" if left_out else ""
            axis.set_title(f"{model.architecture} ({len(model.counted)} seeds{note})")
            axis.set_xlabel("epoch")
            axis.grid(alpha=0.3)
        for axis in axes.flat[len(ordered) :]:
            axis.axis("off")
        axes[0][0].set_ylabel(metric)
        axes[0][0].legend(fontsize="small")
        figure.suptitle(f"{dataset}: {metric} per epoch over seeds")
        figure.tight_layout()
        path = directory / f"{dataset}-{metric}.png"
        figure.savefig(path, dpi=90)
        plt.close(figure)
        written.append(path)
    return written


def _accuracy(model: Model, key: str) -> str:
    """mean ± sd (min-max) of a split's accuracy over the counted runs, flagged when all are degenerate."""
    values = [getattr(run, key) for run in model.counted]
    text = PERCENT.spread(Spread.of(value for value in values if value is not None))
    return f"{text} (all degenerate)" if model.counted[0].degenerate else text


def _setup(model: Model) -> str:
    return (
        f"{model.epochs} / {model.max_length} / {model.train_examples} / {model.validation_examples} / "
        f"{model.test_examples}"
    )


def _table(ordered: list[Model]) -> list[str]:
    lines = [
        "| model | seeds | validation acc | test acc | published version / seed / epoch | published test acc "
        "| s/epoch | params | ONNX converter | parity error |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for model in ordered:
        degenerate = sum(run.degenerate for run in model.runs)
        published = model.published
        published_test = "—" if published.test_accuracy is None else PERCENT.show(published.test_accuracy)
        lines.append(
            f"| {model.name} | {len(model.runs)}{f' ({degenerate} degenerate)' if degenerate else ''} | "
            f"{_accuracy(model, 'validation_accuracy')} | {_accuracy(model, 'test_accuracy')} | "
            f"{model.version} / {published.seed} / {published.published_epoch} | "
            f"{published_test} | "
            f"{Spread.of(run.epoch_seconds for run in model.runs).mean:.1f} | {model.parameters:,} | "
            f"{model.onnx_converter} | {model.parity_error:.1e} |"
        )
    return lines


def _notes(ordered: list[Model]) -> list[str]:
    """Degenerate runs with their figures, versions left out, and runs without test figures."""
    notes = []
    for model in ordered:
        for run in model.runs:
            if run.degenerate:
                counted = (
                    "every run of the model is degenerate, so the means are theirs, flagged"
                    if run in model.counted
                    else "left out of the accuracy means and the claims"
                )
                notes.append(
                    f"- **degenerate run**: {model.name} seed {run.seed} (version {run.version}): validation "
                    f"accuracy {PERCENT.show(run.validation_accuracy)} against a majority-class rate of "
                    f"{PERCENT.show(run.majority_rate)}; {counted}."
                )
        if model.excluded_versions:
            notes.append(
                f"- {model.name}: versions {', '.join(map(str, model.excluded_versions))} left out "
                "(another training setup than the newest version's)."
            )
    if any(run.test_accuracy is None for model in ordered for run in model.runs):
        notes.append(
            "- Versions written before runs.json count as one run each, published at their last epoch, "
            "without test figures (IMDB's held-out split was then its official test set, shown here as "
            "validation)."
        )
    return notes


def render(models_by_dataset: dict[str, dict[str, Model]], command: str, plots: dict[str, list[Path]]) -> str:
    lines = [
        "# Training report",
        "",
        f"Produced by `{command}` from every run in the repository: per model, all versions with the",
        "newest version's training setup (epochs, max length, train examples), one run per seed (the",
        "newest version's when a seed repeats). Figures are mean ± sd (min-max) over seeds. Validation",
        "is carved from the training data and chooses each run's published epoch (lowest validation",
        "loss); the test split is read once per run, at that epoch. Degenerate runs (validation accuracy",
        "near the majority-class rate) are listed and left out of accuracy means and claims, unless",
        "every run of a model is degenerate. Epoch time is the mean over seeds of the mean wall time of",
        "the epochs after the first (which also builds the graph), measured where the models were",
        "trained: other work sharing that machine inflates it unevenly.",
        "",
    ]
    for dataset in sorted(models_by_dataset):
        ordered = _ordered(models_by_dataset[dataset])
        setups = sorted({_setup(model) for model in ordered})
        seeds = sorted({run.seed for model in ordered for run in model.runs})
        lines += [
            f"## {dataset}",
            "",
            "Per model: epochs / max length / train / validation / test examples = "
            f"{', '.join(setups)}; seeds {', '.join(map(str, seeds))}.",
            "",
            *_table(ordered),
            "",
        ]
        notes = _notes(ordered)
        lines += [*notes, ""] if notes else []
        best = max(ordered, key=lambda m: Spread.of(run.validation_accuracy for run in m.counted).mean)
        lines += [
            f"Highest mean validation accuracy: {best.name}, {_accuracy(best, 'validation_accuracy')}; "
            f"its test accuracy {_accuracy(best, 'test_accuracy')}.",
            "",
        ]
        lines += [f"![{dataset} {path.stem.split('-')[-1]}]({path.name})" for path in plots[dataset]]
        lines += ["", f"### Claims on {dataset}", ""]
        for verdict in verdicts(dataset, models_by_dataset[dataset]):
            lines.append(f"- **{verdict.verdict}** — {verdict.claim} {verdict.evidence}.")
        lines.append("")
    lines += ["## How verdicts are decided", ""]
    lines += [line for paragraph in RULE for line in (paragraph, "")]
    lines += ["## Thresholds", ""]
    lines += [f"- {threshold}" for threshold in THRESHOLDS]
    lines.append("")
    return "\n".join(lines)


def report_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seqserve report", description="Write the training report and its plots."
    )
    parser.add_argument("--models", type=Path, default=Path("models"), help="model repository root")
    parser.add_argument("--output", type=Path, default=Path("reports/training.md"))
    return parser


def report_main(argv: list[str]) -> int:
    args = report_parser().parse_args(argv)
    models = load_models(args.models) if args.models.is_dir() else {}
    if not models:
        print(f"seqserve report: error: no trained models in {args.models}; run `seqserve train` first")
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    plots = {dataset: plot_curves(dataset, models[dataset], args.output.parent) for dataset in models}
    command = shlex.join(["seqserve", "report", *argv])
    args.output.write_text(render(models, command, plots), encoding="utf-8")
    print(f"wrote {args.output} and {sum(len(paths) for paths in plots.values())} plots")
    return 0
