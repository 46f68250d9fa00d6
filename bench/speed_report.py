"""reports/speed.md, its plots and a JSON dump of every timing, from one bench.claims run."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.served import Cell
from bench.speed_verdicts import (
    CLAIMS,
    FASTER_RATIO,
    MUCH_FASTER_RATIO,
    ClaimVerdict,
    Finding,
    TimingSpread,
    assess,
    judge,
    overall,
)
from seqserve import verdicts as rule
from seqserve.verdicts import Judgement, Verdict

ARCHITECTURE_ORDER = ("flatten", "gap", "rnn", "lstm", "lstm2", "gru", "conv")
REFERENCE = "lstm"
RUNTIME_TITLES = {"onnx": "ONNX Runtime", "tf": "TensorFlow SavedModel"}
# Each in-process sample is taken on both clocks (bench.inference_timing): clock -> what it measures.
CLOCKS = {"wall": "latency", "cpu": "CPU time"}
MARKS = {Judgement.SUPPORTS: "✓", Judgement.CONTRADICTS: "✗", Judgement.UNCLEAR: "~"}


REAL_TEXTS = 0  # Setting.tokens of batches of the dataset's own texts


@dataclass(frozen=True)
class Setting:
    """One in-process measurement setting: every architecture and both runtimes were interleaved in it.

    Each text of a batch has `tokens` tokens (or REAL_TEXTS), padded for each model as the server pads
    it (serving.sequence): a variable-length graph only as far as it needs, a fixed one to `max_length`,
    the models' input length.
    """

    max_length: int
    batch: int
    tokens: int

    @property
    def full(self) -> bool:
        """Every text fills max_length: no model runs shorter than the fixed ones."""
        return self.tokens == self.max_length

    @property
    def text(self) -> str:
        return "real texts" if self.tokens == REAL_TEXTS else f"{self.tokens} tokens"

    @property
    def label(self) -> str:
        return f"{'real' if self.tokens == REAL_TEXTS else f'{self.tokens} tok'} b{self.batch}"


@dataclass(frozen=True)
class TrainingTiming:
    architecture: str
    model: str
    version: int
    epochs_used: str  # e.g. "2-10"
    seconds: TimingSpread


@dataclass(frozen=True)
class SpeedRun:
    """Everything one run measured (timings in milliseconds per batch) and how it was run."""

    dataset: str
    dataset_length: int
    long_length: int
    batches: tuple[int, ...]
    architectures: tuple[str, ...]  # measured, in report order
    # clock -> runtime -> setting -> architecture -> ms per batch; at the dataset length the trained
    # models, at the long length untrained networks
    inference: dict[str, dict[str, dict[Setting, dict[str, TimingSpread]]]]
    # clock -> runtime -> architecture -> (trained, untrained) at the dataset length and control batch
    control: dict[str, dict[str, dict[str, tuple[TimingSpread, TimingSpread]]]]
    control_batch: int
    training: dict[str, TrainingTiming]
    served: dict[str, list[Cell]]  # runtime -> cells
    header: list[str]  # command, machine, loads, versions, method lines


def ordered(architectures: Sequence[str]) -> tuple[str, ...]:
    known = [a for a in ARCHITECTURE_ORDER if a in architectures]
    return tuple(known + sorted(a for a in architectures if a not in ARCHITECTURE_ORDER))


def contexts(run: SpeedRun) -> dict[str, dict[str, dict[str, TimingSpread]]]:
    """Verdict context -> setting label -> architecture -> timing."""
    result = {"training": {"s/epoch": {a: t.seconds for a, t in run.training.items()}}}
    for runtime in RUNTIME_TITLES:
        for clock, measure in CLOCKS.items():
            if runtime in run.inference.get(clock, {}):
                settings = run.inference[clock][runtime]
                result[f"{RUNTIME_TITLES[runtime]} {measure}"] = {s.label: t for s, t in settings.items()}
    return result


def claim_verdicts(run: SpeedRun) -> dict[str, list[ClaimVerdict]]:
    """Context -> one verdict per claim, in CLAIMS order."""
    return {
        context: [assess(claim, settings) for claim in CLAIMS] for context, settings in contexts(run).items()
    }


def setting_texts(run: SpeedRun) -> dict[str, str]:
    """Setting label -> the text length it measured ("8 tokens", "real texts")."""
    return {
        s.label: s.text
        for by_runtime in run.inference.values()
        for settings in by_runtime.values()
        for s in settings
    }


def where_it_holds(verdict: ClaimVerdict, texts: Mapping[str, str]) -> str:
    """The verdict per text length, e.g. "holds: 8 tokens, 16 tokens; mixed: real texts"."""
    groups: dict[str, list[Finding]] = {}
    for finding in verdict.findings:
        groups.setdefault(texts.get(finding.setting, finding.setting), []).append(finding)
    by_verdict: dict[Verdict, list[str]] = {}
    for group, findings in groups.items():
        by_verdict.setdefault(overall(findings), []).append(group)
    shown = (Verdict.HOLDS, Verdict.MIXED, Verdict.DOES_NOT_HOLD, Verdict.UNCLEAR)
    return "; ".join(f"{v}: {', '.join(by_verdict[v])}" for v in shown if v in by_verdict)


def where_table(run: SpeedRun, verdicts: Mapping[str, list[ClaimVerdict]]) -> list[str]:
    texts = setting_texts(run)
    names = [name for name in verdicts if name != "training"]
    lines = ["| claim | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for index, claim in enumerate(CLAIMS):
        cells = [where_it_holds(verdicts[name][index], texts) or "not measured" for name in names]
        lines.append(f"| {claim.text} | " + " | ".join(cells) + " |")
    return lines


def _x(value: float) -> str:
    return f"{value:.2f}x" if value < 10 else f"{value:.0f}x"


def _ms(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:#.3g}"


def _verdict_cell(verdict: ClaimVerdict) -> str:
    ranges = []
    for comparison in verdict.claim.comparisons:
        span = verdict.speedup_range(comparison)
        if span is not None:
            low, high = span
            value = _x(low) if math.isclose(low, high) else f"{_x(low)}-{_x(high)}"
            ranges.append(f"{comparison.fast} vs {comparison.slow} {value}")
    return f"**{verdict.verdict}** ({verdict.tally()}); speed-up " + ", ".join(ranges)


def verdict_table(verdicts: Mapping[str, list[ClaimVerdict]]) -> list[str]:
    names = list(verdicts)
    lines = ["| claim | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for index, claim in enumerate(CLAIMS):
        cells = [_verdict_cell(verdicts[name][index]) for name in names]
        lines.append(f"| {claim.text} | " + " | ".join(cells) + " |")
    return lines


def _claim_details(verdicts: Mapping[str, list[ClaimVerdict]], index: int) -> list[str]:
    settings: list[str] = []
    for context in verdicts.values():
        for finding in context[index].findings:
            if finding.setting not in settings:
                settings.append(finding.setting)
    lines = [
        "| comparison | where | " + " | ".join(settings) + " |",
        "|---|---|" + "---:|" * len(settings),
    ]
    for comparison in CLAIMS[index].comparisons:
        for context, context_verdicts in verdicts.items():
            found = {f.setting: f for f in context_verdicts[index].findings if f.comparison == comparison}
            if not found:
                continue
            cells = [
                f"{_x(found[s].speedup)} {MARKS[found[s].judgement]}" if s in found else "" for s in settings
            ]
            lines.append(
                f"| {comparison.fast} vs {comparison.slow} | {context} | " + " | ".join(cells) + " |"
            )
    return lines


def _inference_table(
    run: SpeedRun, clock: str, runtime: str, settings: Sequence[Setting], title: str
) -> list[str]:
    """Architecture rows, one column per setting (titled by `title`): ms and the ratio to REFERENCE."""
    by_setting = run.inference[clock][runtime]
    lines = [
        "| architecture | " + " | ".join(title.format(s=s) for s in settings) + " |",
        "|---|" + "---:|" * len(settings),
    ]
    worst = (0.0, "")
    for architecture in run.architectures:
        cells = []
        for setting in settings:
            timings = by_setting[setting]
            spread = timings[architecture]
            ratio = spread.median / timings[REFERENCE].median if REFERENCE in timings else math.nan
            cells.append(f"{_ms(spread.median)} ({ratio:.2f}x)")
            if spread.relative_iqr > worst[0]:
                worst = (spread.relative_iqr, f"{architecture} at {title.format(s=setting)}")
        lines.append(f"| {architecture} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Widest interquartile range in this table: {100 * worst[0]:.0f}% of the median ({worst[1]}).",
    ]
    return lines


def _runtime_ratio_table(run: SpeedRun) -> list[str]:
    """TensorFlow's median over ONNX Runtime's, per clock: "latency / CPU time" in each cell."""
    settings = [s for s in run.inference["wall"]["onnx"] if s.full]
    lines = [
        "| architecture | " + " | ".join(s.label for s in settings) + " |",
        "|---|" + "---:|" * len(settings),
    ]
    for architecture in run.architectures:
        cells = [
            " / ".join(
                _x(
                    run.inference[c]["tf"][s][architecture].median
                    / run.inference[c]["onnx"][s][architecture].median
                )
                for c in CLOCKS
            )
            for s in settings
        ]
        lines.append(f"| {architecture} | " + " | ".join(cells) + " |")
    return lines


def _control_table(run: SpeedRun) -> list[str]:
    columns = [
        (clock, runtime) for runtime in RUNTIME_TITLES for clock in CLOCKS if runtime in run.control[clock]
    ]
    lines = [
        "| architecture | "
        + " | ".join(f"{RUNTIME_TITLES[runtime]} {CLOCKS[clock]}" for clock, runtime in columns)
        + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for architecture in run.architectures:
        cells = []
        for clock, runtime in columns:
            trained, untrained = run.control[clock][runtime][architecture]
            cells.append(
                f"{_ms(trained.median)} / {_ms(untrained.median)} ms "
                f"= {trained.median / untrained.median:.2f}"
            )
        lines.append(f"| {architecture} | " + " | ".join(cells) + " |")
    return lines


def _control_verdict(run: SpeedRun) -> str:
    """Where, by the claims' own rule on CPU time, an untrained network costs clearly more or less."""
    differing = [
        f"{architecture} on {RUNTIME_TITLES[runtime]} (trained / untrained = "
        f"{trained.median / untrained.median:.2f})"
        for runtime, pairs in run.control.get("cpu", {}).items()
        for architecture, (trained, untrained) in pairs.items()
        if Judgement.SUPPORTS in (judge(trained, untrained), judge(untrained, trained))
    ]
    if not differing:
        return (
            "By the rule of the verdicts, on CPU time, no untrained network's cost differs from its "
            "trained counterpart's: they stand in for trained networks at the long length."
        )
    return (
        "By the rule of the verdicts, on CPU time, the untrained network's cost differs clearly from the "
        f"trained one's for: {'; '.join(differing)}. Its long-length figures carry that factor; the other "
        "untrained networks stand in for trained ones."
    )


def _training_table(run: SpeedRun) -> list[str]:
    lines = [
        "| architecture | model version | epochs used | median s/epoch | interquartile range | ÷ lstm |",
        "|---|---:|---|---:|---:|---:|",
    ]
    reference = run.training.get(REFERENCE)
    for architecture in run.architectures:
        timing = run.training.get(architecture)
        if timing is None:
            continue
        s = timing.seconds
        ratio = f"{s.median / reference.seconds.median:.2f}x" if reference else "-"
        lines.append(
            f"| {architecture} | {timing.model} v{timing.version} | {timing.epochs_used} | {s.median:.1f} "
            f"| {s.low:.1f}-{s.high:.1f} | {ratio} |"
        )
    return lines


def _served_table(run: SpeedRun) -> list[str]:
    lines = [
        "| runtime | model | concurrency | calls/s | p50 ms | p99 ms | server p50 ms | server batch "
        "| errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for runtime, cells in run.served.items():
        for cell in cells:
            s = cell.summary
            lines.append(
                f"| {RUNTIME_TITLES[runtime]} | {cell.target} | {cell.concurrency} | {s.requests_per_s:.0f} "
                f"| {s.latency_ms['p50']:.2f} | {s.latency_ms['p99']:.2f} | {s.server_request_p50_ms:.2f} "
                f"| {s.server_mean_batch_size:.2f} | {s.errors_text} |"
            )
    return lines


def render(run: SpeedRun, plots: Sequence[Path]) -> str:
    verdicts = claim_verdicts(run)
    lines = ["# Speed claims", "", *run.header, "", "## Verdicts", ""]
    lines += verdict_table(verdicts)
    lines += [
        "",
        f"Rules: A is *faster* than B in one setting when B's median is at least {FASTER_RATIO:.2f}x A's "
        "**and** A's 75th percentile is below B's 25th (the interquartile ranges do not overlap); *much "
        f"faster* needs {MUCH_FASTER_RATIO:g}x. The reverse (B faster than A by {FASTER_RATIO:.2f}x with "
        "separated ranges) contradicts the claim; anything else is *unclear* (this includes a real "
        "speed-up below the needed ratio). Each comparison in each setting is one check of the claim in "
        f"its column: {rule.RULE} Speed-up = the claimed-slower model's median ÷ the claimed-faster "
        "one's (above 1: the claim's direction). "
        "Inference settings: every batch size at every text length; training: per-epoch wall time.",
        "",
        "### Where each claim holds, by text length",
        "",
        "The same findings, judged separately for the texts of each length (every batch size): a claim "
        "can hold for short texts and not for long ones, where variable-length graphs stop at the "
        "padding and fixed-length ones (Flatten) always read max_length.",
        "",
        *where_table(run, verdicts),
        "",
    ]
    for index, claim in enumerate(CLAIMS):
        lines += [f"### {claim.text}", ""]
        lines += _claim_details(verdicts, index)
        lines.append("")
    lines += [f"✓ {Judgement.SUPPORTS}, ✗ {Judgement.CONTRADICTS}, ~ {Judgement.UNCLEAR}.", ""]
    lines += [
        "## Inference in process",
        "",
        "Median milliseconds per batch of `runtime.run(ids)` (the serving runtime classes, created by "
        "`serving.runtimes.create_runtime` with the server's default settings), and in parentheses the "
        f"ratio to `{REFERENCE}` in the same setting. The ids are padded for each model as the server "
        "pads them: a variable-length graph to its batch's longest text (plus a Conv1D's trailing "
        "padding), a fixed-length one to max_length. Texts of N tokens are N random non-zero ids; real "
        f"texts are batches of the {run.dataset} dataset's texts through the server's encoder. Up to "
        f"{run.dataset_length} tokens: the trained {run.dataset} models; {run.long_length} tokens: "
        "untrained networks of the same architectures (bench/fresh_networks.py). *Latency* is "
        "wall-clock time per call, what a caller waits; *CPU time* is the CPU this process used per "
        "call, which other processes' load inflates far less.",
        "",
    ]
    for clock, measure in CLOCKS.items():
        for runtime, by_setting in run.inference[clock].items():
            by_length = [
                s for s in by_setting if s.max_length == run.dataset_length and s.batch == run.control_batch
            ]
            lines += [
                f"### {RUNTIME_TITLES[runtime]} {measure}, batch {run.control_batch}, by text length",
                "",
            ]
            lines += _inference_table(run, clock, runtime, by_length, "{s.text}")
            lines.append("")
            for max_length in (run.dataset_length, run.long_length):
                full = [s for s in by_setting if s.max_length == max_length and s.full]
                lines += [f"### {RUNTIME_TITLES[runtime]} {measure}, texts of {max_length} tokens", ""]
                lines += _inference_table(run, clock, runtime, full, "batch {s.batch}")
                lines.append("")
    lines += ["### TensorFlow ÷ ONNX Runtime (median per batch; latency / CPU time)", ""]
    lines += _runtime_ratio_table(run)
    lines += [
        "",
        f"### Control: trained vs untrained network, length {run.dataset_length}, batch {run.control_batch}",
        "",
        "The long-length figures come from untrained networks; at the trained length both kinds were "
        "timed in the same rounds. A ratio near 1 means the weights' values do not change the cost; "
        "how far the ratios stray from 1 shows the measurement noise.",
        "",
    ]
    lines += _control_table(run)
    lines += ["", _control_verdict(run)]
    lines += ["", "## Training time per epoch", ""]
    lines += _training_table(run)
    lines += [
        "",
        "From each model's history.json (the training run's own wall time per epoch; the first epoch, "
        "which also traces the graph, is left out). The architectures were trained one after another, "
        "not interleaved, on the same shared machine, so the load during each differed.",
        "",
        "## Served (gRPC, one text per request, dynamic batching at the server's defaults)",
        "",
    ]
    lines += _served_table(run)
    lines += ["", "## Plots", ""]
    lines += [f"![{path.stem}]({path.name})" for path in plots]
    return "\n".join(lines) + "\n"


def write_json(run: SpeedRun, path: Path) -> None:
    """Every spread of the run, for anyone who wants other ratios than the report's."""
    data = {
        "inference_ms": {
            clock: {
                runtime: {
                    s.label: {a: asdict(t) for a, t in by_arch.items()} for s, by_arch in settings.items()
                }
                for runtime, settings in runtimes.items()
            }
            for clock, runtimes in run.inference.items()
        },
        "control_ms": {
            clock: {
                runtime: {a: {"trained": asdict(t), "untrained": asdict(u)} for a, (t, u) in pairs.items()}
                for runtime, pairs in runtimes.items()
            }
            for clock, runtimes in run.control.items()
        },
        "training": {a: asdict(t) for a, t in run.training.items()},
        "served": {
            runtime: [c.summary.as_json() | {"concurrency": c.concurrency} for c in cells]
            for runtime, cells in run.served.items()
        },
    }
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def plot(run: SpeedRun, directory: Path) -> list[Path]:
    """Latency vs batch size (one PNG per runtime, a panel per length) and the training bar chart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for runtime, settings in run.inference["wall"].items():
        lengths = (run.dataset_length, run.long_length)
        figure, axes = plt.subplots(1, len(lengths), figsize=(6.5 * len(lengths), 4.5), sharey=True)
        for axis, max_length in zip(axes, lengths, strict=True):
            chosen = [s for s in settings if s.max_length == max_length and s.full]
            batches = [s.batch for s in chosen]
            for architecture in run.architectures:
                spreads = [settings[s][architecture] for s in chosen]
                medians = [t.median for t in spreads]
                errors = [[t.median - t.low for t in spreads], [t.high - t.median for t in spreads]]
                axis.errorbar(batches, medians, yerr=errors, marker="o", capsize=3, label=architecture)
            axis.set_xscale("log", base=2)
            axis.set_yscale("log")
            axis.set_xticks(batches, [str(b) for b in batches])
            axis.set_xlabel("batch size")
            trained = "trained" if max_length == run.dataset_length else "untrained"
            axis.set_title(f"length {max_length} ({trained})")
            axis.grid(alpha=0.3, which="both")
        axes[0].set_ylabel("ms per batch (median, IQR bars)")
        handles, labels = axes[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="center right", fontsize=9)
        figure.suptitle(f"{RUNTIME_TITLES[runtime]}: inference latency vs batch size")
        figure.tight_layout(rect=(0, 0, 0.9, 1))
        path = directory / f"speed-latency-{runtime}.png"
        figure.savefig(path, dpi=90)
        plt.close(figure)
        written.append(path)

    trained = [a for a in run.architectures if a in run.training]
    if trained:
        figure, axis = plt.subplots(figsize=(7, 4))
        spreads = [run.training[a].seconds for a in trained]
        medians = [t.median for t in spreads]
        errors = [[t.median - t.low for t in spreads], [t.high - t.median for t in spreads]]
        axis.bar(trained, medians, yerr=errors, capsize=4, color="tab:blue")
        axis.set_ylabel("seconds per epoch (median, IQR bars)")
        axis.set_title(f"{run.dataset}: training time per epoch")
        axis.grid(alpha=0.3, axis="y")
        figure.tight_layout()
        path = directory / "speed-training.png"
        figure.savefig(path, dpi=90)
        plt.close(figure)
        written.append(path)
    return written
