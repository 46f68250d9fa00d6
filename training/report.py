"""`seqserve report`: tables, curves and claim verdicts from the newest version of every model.

Everything is read back from the model repository (config.pbtxt + history.json), so the report
describes exactly what would be served. Each claim's verdict is computed from the measured curves
against thresholds that the report prints next to the numbers.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.datasets import held_out_name
from training.repository import latest_versions, read_history

HOLDS, DOES_NOT_HOLD, MIXED, NOT_MEASURED = "holds", "does not hold", "mixed", "not measured"
ARCHITECTURE_ORDER = ("flatten", "gap", "rnn", "lstm", "lstm2", "gru", "conv")

# Thresholds of the claim checks (fractions of 1 for accuracies).
NEAR_ACCURACY = 0.05  # "~85%" means within 5 points
CLIMB_EPOCHS = 3  # "climbs quickly": within CLIMB_MARGIN of the best validation accuracy by this epoch
CLIMB_MARGIN = 0.02
FLAT_CHANGE = 0.01  # "flattens": validation accuracy moves < 1 point per epoch over the last half
HIGH_TRAIN_ACCURACY = 0.95  # "climbs to ~97% train accuracy"
VALIDATION_DROP = 0.01  # final validation accuracy this far below its best = "drops"
LOSS_RISE = 0.10  # final validation loss 10% above its minimum = "rises"
SMOOTHER_RATIO = 0.9  # jaggedness at most 90% of the other's = smoother; at least 1/0.9 = rougher
SLIGHTLY_LOWER = 0.03  # "slightly lower accuracy": 0 < lstm - gru <= 3 points
MUCH_FASTER_RATIO = 0.5  # "much faster": at most half the epoch time
SIMILAR_ACCURACY = 0.02  # "similar accuracy": best validation accuracies within 2 points
SIMILAR_LOSS = 0.05  # "similar loss": lowest validation losses within 0.05


@dataclass(frozen=True)
class ModelRun:
    """The measured facts of one model's newest version."""

    name: str
    dataset: str
    architecture: str
    version: int
    parameters: int
    epochs: int
    train_examples: int
    validation_examples: int
    seed: int
    validation_name: str
    history: dict[str, list[float]]
    onnx_converter: str
    parity_error: float

    @property
    def epoch_seconds(self) -> float:
        """Mean over epochs after the first (which also traces the graph), when there are any."""
        seconds = self.history["seconds"]
        return float(np.mean(seconds[1:] if len(seconds) > 1 else seconds))

    @property
    def final_train_accuracy(self) -> float:
        return self.history["accuracy"][-1]

    @property
    def final_validation_accuracy(self) -> float:
        return self.history["val_accuracy"][-1]

    @property
    def best_validation_accuracy(self) -> float:
        return max(self.history["val_accuracy"])

    @property
    def lowest_validation_loss(self) -> float:
        return min(self.history["val_loss"])

    @property
    def lowest_validation_loss_epoch(self) -> int:
        return int(np.argmin(self.history["val_loss"])) + 1

    @property
    def overfitting_gap(self) -> float:
        return self.final_train_accuracy - self.final_validation_accuracy

    def jaggedness(self, key: str = "val_accuracy") -> float:
        """Mean absolute change between consecutive epochs (0 for a single epoch)."""
        values = self.history[key]
        return float(np.mean(np.abs(np.diff(values)))) if len(values) > 1 else 0.0


def load_runs(models: Path) -> dict[str, dict[str, ModelRun]]:
    """dataset -> architecture -> newest run."""
    runs: dict[str, dict[str, ModelRun]] = {}
    for version_dir, config in latest_versions(models):
        run = ModelRun(
            name=config.name,
            dataset=config.dataset,
            architecture=config.architecture,
            version=config.version,
            parameters=config.parameter_count,
            epochs=config.training.epochs,
            train_examples=config.training.train_examples,
            validation_examples=config.training.validation_examples,
            seed=config.training.seed,
            validation_name=held_out_name(config.dataset),
            history=read_history(version_dir),
            onnx_converter=config.export.onnx_converter,
            parity_error=config.export.parity_max_abs_error,
        )
        runs.setdefault(run.dataset, {})[run.architecture] = run
    return runs


# ---------------------------------------------------------------- claims


@dataclass(frozen=True)
class Verdict:
    claim: str
    verdict: str
    evidence: str


def _combine(checks: list[bool]) -> str:
    if all(checks):
        return HOLDS
    return DOES_NOT_HOLD if not any(checks) else MIXED


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def claim_gap_plateau(runs: dict[str, ModelRun]) -> Verdict:
    claim = "Without RNNs (gap), accuracy climbs quickly to ~85% train / ~80% validation and flattens."
    gap = runs.get("gap")
    if gap is None:
        return Verdict(claim, NOT_MEASURED, "no gap model")
    val = gap.history["val_accuracy"]
    climbed_by = next(i + 1 for i, v in enumerate(val) if v >= max(val) - CLIMB_MARGIN)
    last_half = val[len(val) // 2 :]
    late_change = float(np.mean(np.abs(np.diff(last_half)))) if len(last_half) > 1 else 0.0
    checks = {
        f"final train {_pct(gap.final_train_accuracy)} within {_pct(NEAR_ACCURACY)} of 85%": (
            abs(gap.final_train_accuracy - 0.85) <= NEAR_ACCURACY
        ),
        f"final {gap.validation_name} {_pct(gap.final_validation_accuracy)} "
        f"within {_pct(NEAR_ACCURACY)} of 80%": abs(gap.final_validation_accuracy - 0.80) <= NEAR_ACCURACY,
        f"within {_pct(CLIMB_MARGIN)} of its best {gap.validation_name} accuracy by epoch {climbed_by} "
        f"(quick: <= {CLIMB_EPOCHS})": climbed_by <= CLIMB_EPOCHS,
        f"{gap.validation_name} accuracy moves {_pct(late_change)}/epoch over the last half "
        f"(flat: < {_pct(FLAT_CHANGE)})": (late_change < FLAT_CHANGE),
    }
    return _verdict(claim, checks)


def claim_lstm_overfits(runs: dict[str, ModelRun]) -> Verdict:
    claim = (
        "The bidirectional LSTM climbs to ~97% train accuracy while validation accuracy drops "
        "and validation loss rises."
    )
    lstm = runs.get("lstm")
    if lstm is None:
        return Verdict(claim, NOT_MEASURED, "no lstm model")
    loss_rise = lstm.history["val_loss"][-1] / lstm.lowest_validation_loss - 1
    checks = {
        f"final train accuracy {_pct(lstm.final_train_accuracy)} (>= {_pct(HIGH_TRAIN_ACCURACY)})": (
            lstm.final_train_accuracy >= HIGH_TRAIN_ACCURACY
        ),
        f"final {lstm.validation_name} accuracy {_pct(lstm.final_validation_accuracy)} vs best "
        f"{_pct(lstm.best_validation_accuracy)} (drop: > {_pct(VALIDATION_DROP)})": (
            lstm.best_validation_accuracy - lstm.final_validation_accuracy > VALIDATION_DROP
        ),
        f"final {lstm.validation_name} loss {lstm.history['val_loss'][-1]:.3f} is {_pct(loss_rise)} "
        f"above its minimum {lstm.lowest_validation_loss:.3f} at epoch {lstm.lowest_validation_loss_epoch} "
        f"(rise: > {_pct(LOSS_RISE)})": loss_rise > LOSS_RISE,
    }
    return _verdict(claim, checks)


def claim_stacked_lstm_smoother(runs: dict[str, ModelRun]) -> Verdict:
    claim = "The multi-layer LSTM's curves are smoother than the single-layer LSTM's."
    lstm, lstm2 = runs.get("lstm"), runs.get("lstm2")
    if lstm is None or lstm2 is None:
        return Verdict(claim, NOT_MEASURED, "needs lstm and lstm2 models")
    checks = {}
    for key in ("val_accuracy", "val_loss"):
        single, stacked = lstm.jaggedness(key), lstm2.jaggedness(key)
        checks[
            f"{key} jaggedness lstm2 {stacked:.4f} vs lstm {single:.4f} (smoother: <= {SMOOTHER_RATIO:g}x)"
        ] = stacked <= SMOOTHER_RATIO * single
    return _verdict(claim, checks)


def claim_gru_vs_lstm(runs: dict[str, ModelRun]) -> Verdict:
    claim = "GRU trains faster than LSTM, with slightly lower accuracy."
    lstm, gru = runs.get("lstm"), runs.get("gru")
    if lstm is None or gru is None:
        return Verdict(claim, NOT_MEASURED, "needs lstm and gru models")
    difference = lstm.best_validation_accuracy - gru.best_validation_accuracy
    checks = {
        f"epoch time gru {gru.epoch_seconds:.1f} s vs lstm {lstm.epoch_seconds:.1f} s": (
            gru.epoch_seconds < lstm.epoch_seconds
        ),
        f"best {gru.validation_name} accuracy gru {_pct(gru.best_validation_accuracy)} vs lstm "
        f"{_pct(lstm.best_validation_accuracy)} (slightly lower: 0 < difference <= {_pct(SLIGHTLY_LOWER)})": (
            0 < difference <= SLIGHTLY_LOWER
        ),
    }
    return _verdict(claim, checks)


def claim_flatten_conv_fast(runs: dict[str, ModelRun]) -> Verdict:
    claim = "Flatten and Conv1D train much faster than LSTM/GRU."
    recurrent = [runs[name] for name in ("lstm", "gru") if name in runs]
    fast = [runs[name] for name in ("flatten", "conv") if name in runs]
    if not recurrent or not fast:
        return Verdict(claim, NOT_MEASURED, "needs flatten or conv and lstm or gru models")
    quickest_recurrent = min(recurrent, key=lambda run: run.epoch_seconds)
    checks = {
        f"epoch time {run.architecture} {run.epoch_seconds:.1f} s vs {quickest_recurrent.architecture} "
        f"{quickest_recurrent.epoch_seconds:.1f} s (much faster: <= {MUCH_FASTER_RATIO:g}x)": (
            run.epoch_seconds <= MUCH_FASTER_RATIO * quickest_recurrent.epoch_seconds
        )
        for run in fast
    }
    return _verdict(claim, checks)


def claim_conv_matches_lstm(runs: dict[str, ModelRun]) -> Verdict:
    claim = "The bidirectional LSTM and Conv1D reach similar accuracy and loss, with Conv1D more stable."
    lstm, conv = runs.get("lstm"), runs.get("conv")
    if lstm is None or conv is None:
        return Verdict(claim, NOT_MEASURED, "needs lstm and conv models")
    checks = {
        f"best {conv.validation_name} accuracy conv {_pct(conv.best_validation_accuracy)} vs lstm "
        f"{_pct(lstm.best_validation_accuracy)} (similar: within {_pct(SIMILAR_ACCURACY)})": (
            abs(conv.best_validation_accuracy - lstm.best_validation_accuracy) <= SIMILAR_ACCURACY
        ),
        f"lowest {conv.validation_name} loss conv {conv.lowest_validation_loss:.3f} vs lstm "
        f"{lstm.lowest_validation_loss:.3f} (similar: within {SIMILAR_LOSS:g})": (
            abs(conv.lowest_validation_loss - lstm.lowest_validation_loss) <= SIMILAR_LOSS
        ),
        f"val_accuracy jaggedness conv {conv.jaggedness():.4f} vs lstm {lstm.jaggedness():.4f} "
        "(more stable: lower)": conv.jaggedness() < lstm.jaggedness(),
    }
    return _verdict(claim, checks)


def _verdict(claim: str, checks: dict[str, bool]) -> Verdict:
    evidence = "; ".join(f"{text}: {'yes' if passed else 'no'}" for text, passed in checks.items())
    return Verdict(claim, _combine(list(checks.values())), evidence)


CLAIMS: tuple[Callable[[dict[str, ModelRun]], Verdict], ...] = (
    claim_gap_plateau,
    claim_lstm_overfits,
    claim_stacked_lstm_smoother,
    claim_gru_vs_lstm,
    claim_flatten_conv_fast,
)
# The course states this one for the sarcasm headlines only.
SARCASM_CLAIMS = (claim_conv_matches_lstm,)


def verdicts(dataset: str, runs: dict[str, ModelRun]) -> list[Verdict]:
    claims = CLAIMS + (SARCASM_CLAIMS if dataset == "sarcasm" else ())
    return [claim(runs) for claim in claims]


# ---------------------------------------------------------------- output


def _ordered(runs: dict[str, ModelRun]) -> list[ModelRun]:
    known = [runs[name] for name in ARCHITECTURE_ORDER if name in runs]
    return known + [runs[name] for name in sorted(runs) if name not in ARCHITECTURE_ORDER]


def plot_curves(dataset: str, runs: dict[str, ModelRun], directory: Path) -> list[Path]:
    """One PNG for accuracy and one for loss: a panel per architecture, train and held-out curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = _ordered(runs)
    written = []
    for metric, label in (("accuracy", "accuracy"), ("loss", "loss")):
        columns = min(4, len(ordered))
        rows = -(-len(ordered) // columns)
        figure, axes = plt.subplots(
            rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False, sharey=True
        )
        for axis, run in zip(axes.flat, ordered, strict=False):
            epochs = range(1, len(run.history[metric]) + 1)
            axis.plot(epochs, run.history[metric], "o-", label="train", markersize=3)
            axis.plot(epochs, run.history[f"val_{metric}"], "s-", label=run.validation_name, markersize=3)
            axis.set_title(run.architecture)
            axis.set_xlabel("epoch")
            axis.grid(alpha=0.3)
        for axis in axes.flat[len(ordered) :]:
            axis.axis("off")
        axes[0][0].set_ylabel(label)
        axes[0][0].legend()
        figure.suptitle(f"{dataset}: {label} per epoch")
        figure.tight_layout()
        path = directory / f"{dataset}-{metric}.png"
        figure.savefig(path, dpi=90)
        plt.close(figure)
        written.append(path)
    return written


def render(
    runs_by_dataset: dict[str, dict[str, ModelRun]], command: str, plots: dict[str, list[Path]]
) -> str:
    lines = [
        "# Training report",
        "",
        f"Produced by `{command}` from the newest version of every model in the repository.",
        "Epoch time is the mean wall time of the epochs after the first (the first also builds the graph),",
        "measured where the models were trained: other work sharing that machine inflates it unevenly.",
        "Overfitting gap = final train accuracy - final held-out accuracy; jaggedness = mean absolute change",
        "of held-out accuracy between consecutive epochs. Padding (id 0) follows the text and is not masked,",
        "so recurrent layers read it: a one-directional SimpleRNN ends on padding for every short text.",
        "",
    ]
    for dataset in sorted(runs_by_dataset):
        runs = runs_by_dataset[dataset]
        ordered = _ordered(runs)
        held_out = ordered[0].validation_name
        lines += [
            f"## {dataset}",
            "",
            f"Held-out split: {held_out}. Per model: epochs / train examples / {held_out} examples / seed = "
            + ", ".join(
                sorted(
                    {f"{r.epochs} / {r.train_examples} / {r.validation_examples} / {r.seed}" for r in ordered}
                )
            )
            + ".",
            "",
            f"| model | version | params | epoch time (s) | final train acc | final {held_out} acc | "
            f"best {held_out} acc | epoch of lowest {held_out} loss | overfitting gap | jaggedness | "
            "ONNX converter | parity error |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
        ]
        for run in ordered:
            lines.append(
                f"| {run.name} | {run.version} | {run.parameters:,} | {run.epoch_seconds:.1f} | "
                f"{run.final_train_accuracy:.4f} | {run.final_validation_accuracy:.4f} | "
                f"{run.best_validation_accuracy:.4f} | {run.lowest_validation_loss_epoch} | "
                f"{run.overfitting_gap:+.4f} | {run.jaggedness():.4f} | {run.onnx_converter} | "
                f"{run.parity_error:.1e} |"
            )
        best = max(ordered, key=lambda run: run.best_validation_accuracy)
        lines += [
            "",
            f"Best {held_out} accuracy: {best.name} {_pct(best.best_validation_accuracy)}.",
            "",
        ]
        lines += [f"![{dataset} {path.stem.split('-')[-1]}]({path.name})" for path in plots[dataset]]
        lines += ["", f"### Claims on {dataset}", ""]
        for verdict in verdicts(dataset, runs):
            lines.append(f"- **{verdict.verdict}** — {verdict.claim} {verdict.evidence}.")
        lines.append("")
    lines += [
        "## Thresholds",
        "",
        f"- ~X%: within {_pct(NEAR_ACCURACY)}; climbs quickly: within {_pct(CLIMB_MARGIN)} of the best "
        f"held-out accuracy by epoch {CLIMB_EPOCHS}; flattens: held-out accuracy moves less than "
        f"{_pct(FLAT_CHANGE)} per epoch over the last half of training.",
        f"- ~97% train accuracy: at least {_pct(HIGH_TRAIN_ACCURACY)}; held-out accuracy drops: final "
        f"more than {_pct(VALIDATION_DROP)} below best; loss rises: final more than {_pct(LOSS_RISE)} "
        "above its minimum.",
        f"- smoother: jaggedness at most {SMOOTHER_RATIO:g}x the other's (held-out accuracy and loss).",
        f"- slightly lower accuracy: best held-out accuracy lower by more than 0 and at most "
        f"{_pct(SLIGHTLY_LOWER)}; much faster: at most {MUCH_FASTER_RATIO:g}x the epoch time of the "
        "quicker of LSTM/GRU.",
        f"- similar: best held-out accuracies within {_pct(SIMILAR_ACCURACY)} and lowest held-out "
        f"losses within {SIMILAR_LOSS:g}; more stable: lower jaggedness.",
        "- A claim holds when every check passes, does not hold when none does, and is mixed otherwise.",
        "",
    ]
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
    runs = load_runs(args.models) if args.models.is_dir() else {}
    if not runs:
        print(f"seqserve report: error: no trained models in {args.models}; run `seqserve train` first")
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    plots = {dataset: plot_curves(dataset, runs[dataset], args.output.parent) for dataset in runs}
    command = shlex.join(["seqserve", "report", *argv])
    args.output.write_text(render(runs, command, plots), encoding="utf-8")
    print(f"wrote {args.output} and {sum(len(paths) for paths in plots.values())} plots")
    return 0
